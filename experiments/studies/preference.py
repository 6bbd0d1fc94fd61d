"""Probes for the six reward-model preference dimensions, and the harmlessness probe vs the model's preference.

Linear probes for harmlessness, helpfulness, correctness, coherence, complexity and verbosity
(MRMBench protocol: read at the last token of input + response; the final layer, plus a sweep over
layers with controls; :func:`probe.preference.preference_probes`). On the easy split with
harmlessness among the dimensions, the cross-check: internal, per held-out HH-RLHF pair, the
harmlessness probe's score of the chosen response minus the rejected one (best layer); behavioural,
the model's own per-token ``log p`` of the chosen response minus the rejected one given the dialogue
(shared log-prob scorer). Expected: positive (a model whose representation separates harmless from
harmful answers also prefers to say them).

As a batch job (``workbench run preference-dimensions``, :func:`grid_run`) the study is a grid on the executor:
a collection task per (model, split, dimension) writes the activations once into the activation store (a
directory the workers share; one atomic safetensors file per model weights, data and layers, its sha256
recorded), a probe task per (model, split, dimension, layer) reads them (no model needed, so they spread over
every worker) and returns that layer's sweep as JSON, and a final unit per (model, split) merges the layers
(:func:`probe.sweep_parts.merge_layer_sweeps`) and runs the cross-check on the model. Every task's result is a
resumable shard of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from workbench.layers import LayerSpec

from ..study import StudyResult, estimate_dict, fits_context, skipped

__all__ = ["PreferenceStudy", "compute", "run", "step_name", "collect_task", "probe_task", "check_collected",
           "grid_run"]

TITLE = "Preference dimensions: probes, and harmlessness vs the model's own preference"


@dataclass
class PreferenceStudy:
    """``[preference]``: preference-dimension probes (one step per split: ``preference-<split>``).

    Attributes:
        enabled: run this study.
        dimensions: dimensions to probe (``probe.preference.DIMENSIONS``); empty: all six.
        splits: ``easy`` (binary) and/or ``hard`` (3 classes).
        layers: layers to sweep (a layer spec); the final layer is always included.
        limit: records per dimension (0: every record).
        n_resamples: bootstrap resamples of every interval.
    """

    enabled: bool = True
    dimensions: list[str] = field(default_factory=list)
    splits: list[Literal["easy", "hard"]] = field(default_factory=lambda: ["easy", "hard"])
    layers: list[LayerSpec] = field(default_factory=lambda: ["all"])
    limit: int = field(default=150, metadata={"zero": "every record"})
    n_resamples: int = 1000


def step_name(split: str) -> str:
    return f"preference-{split}"


def dimension_set(m: Any, cfg: PreferenceStudy, split: str, dim: str, *, seed: int = 0) -> tuple[Any, list[str]]:
    """The labelled set of one dimension on ``m`` (records longer than its context dropped), or None when fewer
    than 4 records of some class fit; and notes saying what was dropped."""
    from probe.preference import build_preference_set

    ds = build_preference_set(dim, split, seed=seed, limit=cfg.limit or None)
    chat = bool(m.facts.has_chat_template) if ds.chat is None else bool(ds.chat)
    fit = fits_context(m, [e.prompt for e in ds.examples], chat=chat, system=ds.system,
                       continuations=[e.output for e in ds.examples])
    notes = []
    if not all(fit):
        notes.append(f"{dim}: dropped {fit.count(False)} of {len(ds)} records longer than {m.name}'s context "
                     f"({m.facts.n_ctx} tokens)")
        ds = ds.subset([i for i, ok in enumerate(fit) if ok])
    counts = [int((ds.labels == c).sum()) for c in range(len(ds.label_names))] if len(ds) else [0]
    if min(counts) < 4:
        notes.append(f"{dim}: left out, fewer than 4 records of some class fit {m.name}'s context")
        return None, notes
    return ds, notes


def compute(ctx: Any, m: Any, cfg: PreferenceStudy, split: str, *, seed: int = 0,
            sweeps: dict[str, dict] | None = None, grid_notes: list[str] | None = None) -> StudyResult:
    """The study on ``m``. ``sweeps`` (from the batch grid, :func:`grid_run`): ``{dimension: {"parts": [single-
    layer sweeps as JSON], "groups": [...]}}`` already computed for the dimensions that had enough records, with
    ``grid_notes`` the collection's notes; without them the probes are computed here."""
    from probe.preference import DIMENSIONS, preference_layers, preference_probes, preference_result
    from probe.sweep_parts import merge_layer_sweeps, sweep_from_dict
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layers
    from workbench.scorers import continuation_logprobs

    dims = list(cfg.dimensions) or list(DIMENSIONS)
    sets, notes = {}, list(grid_notes or [])
    if sweeps is None:
        for d in dims:
            ds, why = dimension_set(m, cfg, split, d, seed=seed)
            notes += why
            if ds is not None:
                sets[d] = ds
        dims = [d for d in dims if d in sets]
    else:
        dims = [d for d in dims if d in sweeps]
    if not dims:
        return skipped("Preference dimensions", "preference", f"no dimension has enough records that fit "
                       f"{m.name}'s context ({m.facts.n_ctx} tokens)", notes=notes)
    if sweeps is None:
        res = preference_probes(m, dims, split=split, layers=resolve_layers(m, cfg.layers), datasets=sets,
                                limit=cfg.limit or None, seed=seed, n_resamples=cfg.n_resamples,
                                progress=ctx.progress)
    else:
        merged = {d: merge_layer_sweeps([sweep_from_dict(x) for x in sweeps[d]["parts"]], sweeps[d]["groups"],
                                        n_resamples=cfg.n_resamples, seed=seed) for d in dims}
        res = preference_result(m, dims, split, merged, preference_layers(m, resolve_layers(m, cfg.layers)),
                                seed=seed)
        if "harmlessness" in dims and split == "easy":
            sets["harmlessness"] = dimension_set(m, cfg, split, "harmlessness", seed=seed)[0]
    table = res.summary_table()
    metrics = {}
    for d in dims:
        metrics[f"{d}: final-layer AUROC"] = estimate_dict(res.final[d])
        L, e = res.best[d]
        metrics[f"{d}: best layer {L} AUROC"] = estimate_dict(e)
    results = {"preference": res}
    tables = {"preference_summary": table.reset_index() if table.index.name else table}
    plain = dict(results=results, tables_off=("preference",),
                 tables={**tables, "preference_layers": res.to_dataframe()}, metrics=metrics,
                 notes=notes + list(res.notes)[:5],
                 payload={"split": split, "n_layers": m.n_layers,
                          "auroc_by_layer": {d: [{"layer": int(L), "estimate": e.to_dict()}
                                                 for L, e in zip(sw.layers, sw.estimates("logistic")) if L < m.n_layers]
                                             for d, sw in res.sweeps.items()},
                          "best_layer": {d: int(res.best[d][0]) for d in dims}})
    if "harmlessness" not in dims or split != "easy":
        return StudyResult("Preference dimensions", "Linear probes per dimension (MRMBench protocol).", "preference",
                           **plain)
    sw = res.sweeps["harmlessness"]
    L = res.best["harmlessness"][0]
    li = sw.layers.index(L)
    ds = sets["harmlessness"]
    test = np.flatnonzero(np.asarray(sw.test, bool))
    scores = np.asarray(sw.test_scores["logistic"][li], float)
    exs = [ds.examples[i] for i in test]
    chat = bool(ds.chat) if ds.chat is not None else not isinstance(exs[0].prompt, str)
    lp = continuation_logprobs(m, [e.prompt for e in exs], [e.output for e in exs], chat=chat,
                               **({"system": ds.system} if chat and ds.system else {}))
    per_tok = np.asarray(lp.mean_per_token, float)
    by: dict = {}
    for e, s, lpt in zip(exs, scores, per_tok):
        by.setdefault(e.group, {})[e.label] = (s, lpt)
    pairs = [(g, v) for g, v in by.items() if 0 in v and 1 in v]
    units = [str(g) for g, _ in pairs]
    dint = np.array([v[1][0] - v[0][0] for _, v in pairs])
    dbeh = np.array([v[1][1] - v[0][1] for _, v in pairs])
    cc = CrossCheck.from_measurements(units, dint, dbeh, internal_name="probe score chosen - rejected",
                                      behavioural_name="log p per token chosen - rejected", unit_name="pair",
                                      seed=seed, provenance=m.provenance(seed=seed, extra={"study": "preference",
                                                                                           "layer": L}))
    return StudyResult(
        TITLE,
        f"Linear probes for {', '.join(dims)} ({split} split; MRMBench protocol: read at the last token of "
        "input + response, final layer, plus a sweep over layers with controls). Cross-check over the "
        f"{len(units)} held-out HH-RLHF harmless pairs: the harmlessness probe's score difference at layer {L} "
        "(internal) against the model's per-token log p of the chosen over the rejected response "
        "(behaviour, shared log-prob scorer); expected positive.",
        "preference", cc, **plain)


def run(ctx: Any, m: Any, cfg: PreferenceStudy, split: str, *, seed: int = 0, step: str | None = None) -> dict:
    return ctx.study(step or step_name(split), lambda: compute(ctx, m, cfg, split, seed=seed))


# -- the study as a grid of tasks (JSON in, JSON out; module-level, so any executor runs them) ----------------
def _task_config(task: dict) -> PreferenceStudy:
    from ..config import config_from_dict

    return config_from_dict(PreferenceStudy, task["config"])


def _sha256(path: Path) -> str:
    from ..writer import _file_sha

    return _file_sha(path)


def collect_task(task: dict) -> dict:
    """Collect one (model, split, dimension)'s activations into the activation store ``task["store"]``.

    The file is named by a hash of the model's weights, the data and the layers, and written atomically
    (:meth:`probe.activations.Activations.save`); one already there is reused when it reads back. ``_store``:
    the store's directory (a leading ``_``: where to find things, not part of the shard's job, so a run directory
    or store may move). Returns ``{"file", "sha256", "layers", "groups", "n", "notes"}`` (``file``: the name in
    the store; None when the dimension is left out)."""
    from probe.activations import Activations
    from probe.preference import preference_activations, preference_layers
    from workbench.layers import resolve_layers
    from workbench.results import data_hash

    from ..tasks import task_model
    from ..writer import _slug

    m = task_model(task)
    cfg = _task_config(task)
    split, dim, seed = task["split"], task["dimension"], int(task.get("seed", 0))
    ds, notes = dimension_set(m, cfg, split, dim, seed=seed)
    if ds is None:
        return {"file": None, "sha256": None, "layers": [], "groups": [], "n": 0, "notes": notes}
    Ls = preference_layers(m, resolve_layers(m, cfg.layers))
    key = data_hash(m.weights_hash, ds.data_hash(), Ls, "preference_activations/last/final_norm")
    path = Path(task["_store"]) / f"{_slug(m.name)}_{split}_{dim}_{key}.safetensors"
    try:
        acts = Activations.load(path)
    except Exception:  # noqa: BLE001 - absent, truncated or unreadable: collected again
        acts = preference_activations(m, ds, Ls)
        acts.save(path)
    return {"file": path.name, "sha256": _sha256(path), "layers": [int(L) for L in acts.layers],
            "groups": [str(g) for g in acts.groups] if acts.groups is not None else [str(i) for i in range(acts.n)],
            "n": len(ds), "notes": notes}


def check_collected(result: dict, store: str | Path) -> str | None:
    """Why a finished collection cannot be trusted: its activation file in ``store`` is gone or is not the file
    it wrote (sha256); a changed file is deleted, so that the collection task writes it again."""
    if result.get("file") is None:
        return None
    p = Path(store) / result["file"]
    if not p.is_file():
        return f"its activation file {p} is missing"
    if _sha256(p) != result["sha256"]:
        p.unlink(missing_ok=True)
        return f"its activation file {p} was changed or truncated (sha256 differs); deleted"
    return None


def probe_task(task: dict) -> dict:
    """The layer sweep (probes with controls) of one layer of stored activations: ``file`` in the store ``_store``
    (and its ``sha256``, checked), ``layer``, ``split``, ``seed``, ``n_resamples``. Needs no model. Returns the sweep as JSON
    (:func:`probe.sweep_parts.sweep_to_dict`; analytic intervals, the headline is bootstrapped at the merge)."""
    import dataclasses

    from probe.activations import Activations
    from probe.preference import preference_sweep_kwargs
    from probe.sweep import layer_sweep
    from probe.sweep_parts import sweep_to_dict
    from workbench.errors import WorkbenchError

    path = Path(task["_store"]) / task["file"]
    if not path.is_file() or _sha256(path) != task["sha256"]:
        raise WorkbenchError(f"activation file {path} is missing or not the one collected (sha256 differs); rerun "
                             "with --resume to collect it again")
    acts = Activations.load(path)
    L = int(task["layer"])
    i = acts.layers.index(L)
    one = dataclasses.replace(acts, x=acts.x[i:i + 1], layers=[L])
    sw = layer_sweep(one, headline_ci="delong", **preference_sweep_kwargs(
        task["split"], seed=int(task.get("seed", 0)), n_resamples=int(task["n_resamples"])))
    return sweep_to_dict(sw)


def grid_run(ctx: Any, cfg: PreferenceStudy, names: Sequence[str], *, seed: int = 0, store: str | Path | None = None,
             step: Callable[[str, str], str] | None = None) -> list[tuple[str, str, str, dict]]:
    """The study on every model in ``names`` as a grid (see the module docstring); returns ``(model, split, step,
    payload)`` per (model, split). ``store``: the activation store directory (default ``<run>/activations``).
    ``step(split, model)``: the step name of a (model, split) (default ``preference-<split>``, with ``@<model>``
    when there are several models)."""
    from dataclasses import asdict

    from probe.preference import DIMENSIONS

    from ..tasks import study_task

    sec = ctx.config.model
    store = str(Path(store).resolve() if store else (ctx.out / "activations").resolve())
    base = {"backend": sec.backend, "device": sec.device, "dtype": sec.dtype, "seed": seed}
    dims = list(cfg.dimensions) or list(DIMENSIONS)
    colls = [{"model": n, **base, "config": asdict(cfg), "_store": store, "split": sp, "dimension": d}
             for n in names for sp in cfg.splits for d in dims]
    got = ctx.grid("preference-collect", collect_task, colls, check=lambda r: check_collected(r, store))
    probes = [{"model": c["model"], **base, "split": c["split"], "dimension": c["dimension"], "_store": store,
               "file": r["file"], "sha256": r["sha256"], "layer": L, "n_resamples": cfg.n_resamples}
              for c, r in zip(colls, got) if r["file"] is not None for L in r["layers"]]
    parts = ctx.grid("preference-probe", probe_task, probes, keyed=False)
    sweeps: dict[tuple[str, str], dict] = {}
    notes: dict[tuple[str, str], list[str]] = {}
    for c, r in zip(colls, got):
        notes.setdefault((c["model"], c["split"]), []).extend(r["notes"])
        if r["file"] is not None:
            sweeps.setdefault((c["model"], c["split"]), {})[c["dimension"]] = {"parts": [], "groups": r["groups"]}
    for t, part in zip(probes, parts):
        sweeps[(t["model"], t["split"])][t["dimension"]]["parts"].append(part)
    step = step or (lambda sp, n: step_name(sp) if len(names) == 1 else f"{step_name(sp)}@{n}")
    units = []
    for n in names:
        for sp in cfg.splits:
            st = step(sp, n)
            units.append((st, {"study": "preference", "config": asdict(cfg), "model": n, **base,
                               "config_class": f"{PreferenceStudy.__module__}:PreferenceStudy", "step": st,
                               "title_suffix": f" [{n}]" if len(names) > 1 else "",
                               "kwargs": {"split": sp, "sweeps": sweeps.get((n, sp), {}),
                                          "grid_notes": notes.get((n, sp), [])}}))
    payloads = ctx.units("preference", study_task, units)
    return [(t["model"], t["kwargs"]["split"], st, p) for (st, t), p in zip(units, payloads)]
