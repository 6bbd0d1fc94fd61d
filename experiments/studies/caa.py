"""Contrastive activation addition: layer x multiplier sweeps with the equal-norm random control.

CAA vectors (Rimsky et al. 2024; letter-balanced mean differences at the answer token) per
behaviour, each behaviour's layer selected on held-out pairs, steering on the tokens after the
instruction (:func:`steering.pipelines.run_caa_experiment`). Internal: the steering multiplier
along the CAA vector (and along a random direction of equal norm). Behavioural: p(answer matching
the behaviour) from the shared A/B scorer on held-out items. Cross-check per (behaviour,
multiplier) at each behaviour's selected layer: multiplier vs p(matching); expected positive. The
random control's effect should contain 0. Needs a chat template (the A/B items are chat turns).

As a batch job (:func:`grid_run`) the sweep is a grid on the executor: a vector task per (model, behaviour) builds
the CAA vectors at every candidate layer into the vector store (a directory the workers share; one safetensors
file per model weights, items and layers, written atomically, its sha256 recorded), a sweep task per (model,
behaviour, layer) reads its layer's vector and returns that layer's multiplier cells, random control and selection
effect as JSON, and a final unit per model merges the cells (:func:`steering.sweeps.merge_caa_sweeps`) into the
study's tables and cross-check, equal to the one-process study's. Every task's result is a resumable shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from workbench.layers import LayerSpec

from ..study import StudyResult, estimate_dict, skipped

__all__ = ["CAAStudy", "STEP", "compute", "run", "vector_task", "sweep_task", "check_vectors", "grid_run"]

STEP = "caa-sweep"
TITLE = "CAA steering: multiplier vs A/B behaviour"


@dataclass
class CAAStudy:
    """``[caa]``: CAA layer x multiplier sweeps.

    Attributes:
        enabled: run this study.
        behaviours: CAA behaviours (``workbench.datasets.caa_behaviours()``).
        layers: candidate steering layers (a layer spec; [0.2 .. 0.6] are layers 6, 9, 12, 15, 18 of 30).
        multipliers: steering multipliers of the raw mean difference.
        n_build: ``generate`` pairs the vector is built from.
        n_select: held-out ``generate`` pairs the layer is selected on.
        n_test: ``test`` items scored; 0: the whole test split.
    """

    enabled: bool = True
    behaviours: list[str] = field(default_factory=lambda: ["myopic-reward", "sycophancy"])
    layers: list[LayerSpec] = field(default_factory=lambda: [0.2, 0.3, 0.4, 0.5, 0.6])
    multipliers: list[float] = field(default_factory=lambda: [-2.0, -1.0, 0.0, 1.0, 2.0])
    n_build: int = 150
    n_select: int = 30
    n_test: int = field(default=0, metadata={"zero": "the whole test split"})


def compute(ctx: Any, m: Any, cfg: CAAStudy, *, seed: int = 0, parts: dict | None = None) -> StudyResult:
    """The study on ``m``. ``parts`` (from the batch grid, :func:`grid_run`): ``{"sweeps": [single (behaviour,
    layer) sweeps as JSON, behaviour by behaviour, layer by layer], "vector_hashes": {behaviour: the vectors'
    data hash}}``, merged here; without it the sweep is computed here."""
    import pandas as pd

    from steering.pipelines import caa_items, run_caa_experiment
    from steering.sweeps import caa_sweep_from_dict, merge_caa_sweeps
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layers

    if not m.facts.has_chat_template:
        return skipped(TITLE, "caa", f"{m.name} has no chat template, and the CAA items are chat turns")
    layers = resolve_layers(m, cfg.layers)
    if parts is None:
        from workbench.models import ContextLengthError

        try:
            sw = run_caa_experiment(m, cfg.behaviours, layers=layers, multipliers=cfg.multipliers, n_build=cfg.n_build,
                                    n_select=cfg.n_select, n_test=cfg.n_test or None, seed=seed,
                                    progress=ctx.progress).sweep
        except ContextLengthError as e:
            return skipped(TITLE, "caa", f"the CAA items do not fit {m.name}'s context of {m.facts.n_ctx} tokens ({e})")
    else:
        items = {b: caa_items(b, n_build=cfg.n_build, n_select=cfg.n_select, n_test=cfg.n_test or None, seed=seed)
                 for b in cfg.behaviours}
        sw = merge_caa_sweeps(m, [caa_sweep_from_dict(x) for x in parts["sweeps"]],
                              {b: it[2] for b, it in items.items()}, {b: it[1] for b, it in items.items()},
                              parts["vector_hashes"])
    ms = sorted(sw.multipliers)
    units, xs, ys, metrics, rows, by_behaviour = [], [], [], {}, [], {}
    for b in cfg.behaviours:
        L = sw.best_layer(b)
        by_behaviour[b] = {
            "selected_layer": int(L), "effect": estimate_dict(sw.effect(b, L)),
            "random_effect": estimate_dict(sw.effect(b, L, "random")) if sw.control else None,
            "effect_by_layer": [{"layer": int(x), "estimate": estimate_dict(sw.effect(b, x))} for x in sw.layers]}
        for mult in ms:
            e = sw.estimate(b, L, mult)
            units.append(f"{b} x{mult:+g}")
            xs.append(mult)
            ys.append(e.value)
            rows.append({"behaviour": b, "layer": L, "multiplier": mult, "p_matching": e.value, "ci_low": e.ci_low,
                         "ci_high": e.ci_high,
                         **({"random_p": sw.estimate(b, L, mult, "random").value} if sw.control else {})})
        metrics[f"{b}: selected layer"] = L
        metrics[f"{b}: effect x{max(cfg.multipliers):g} - x{min(cfg.multipliers):g}"] = estimate_dict(sw.effect(b, L))
        metrics[f"{b}: monotone in the multiplier"] = sw.is_monotone(b, L)
        if sw.control:
            metrics[f"{b}: random-control effect"] = estimate_dict(sw.effect(b, L, "random"))
    cc = CrossCheck.from_measurements(units, xs, ys, internal_name="steering multiplier",
                                      behavioural_name="p(matching)", unit_name="behaviour x multiplier",
                                      seed=seed, provenance=m.provenance(seed=seed, extra={"study": "caa"}))
    return StudyResult(
        TITLE,
        f"CAA vectors (Rimsky et al. 2024; letter-balanced mean differences at the answer token) for "
        f"{', '.join(cfg.behaviours)} at layers {layers}; each behaviour's layer is selected on held-out "
        "pairs; steering acts on the tokens after the instruction. Cross-check: multiplier (internal "
        "intervention) vs p(matching) (behaviour, shared A/B scorer); expected positive. The random "
        "direction of equal norm is the control.",
        "caa", cc, results={"caa_sweep": sw}, tables={"caa_best_layer": pd.DataFrame(rows)}, metrics=metrics,
        payload={"n_layers": int(m.facts.n_layers), "multipliers": ms, "behaviours": by_behaviour})


def run(ctx: Any, m: Any, cfg: CAAStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))


# -- the sweep as a grid of tasks (JSON in, JSON out; module-level, so any executor runs them) ----------------
def _task_config(task: dict) -> CAAStudy:
    from ..config import config_from_dict

    return config_from_dict(CAAStudy, task["config"])


def _sha256(path: Path) -> str:
    from ..writer import _file_sha

    return _file_sha(path)


#: the batch size of the one-process study (:func:`steering.pipelines.run_caa_experiment`): the grid's passes
#: batch the same items alike, so their numbers are the same
BATCH_SIZE = 8


def vector_task(task: dict) -> dict:
    """Build one (model, behaviour)'s CAA vectors at every candidate layer into the vector store ``_store``.

    The file is named by a hash of the model's weights, the build pairs and the layers, and written atomically
    (:meth:`workbench.vectors.DirectionSet.save`: ``.safetensors`` plus ``.json``); one already there is reused
    when it reads back. Returns ``{"file", "sha256", "layers", "data_hash"}`` (``file``: the name in the store
    without suffix; None, with ``why``, when the model has no chat template)."""
    from steering.build import build_caa_vectors
    from steering.pipelines import caa_items
    from steering.vector import SteeringVector
    from workbench.layers import resolve_layers
    from workbench.results import data_hash

    from ..tasks import task_model
    from ..writer import _slug

    m = task_model(task)
    cfg = _task_config(task)
    b, seed = task["behaviour"], int(task.get("seed", 0))
    if not m.facts.has_chat_template:
        return {"file": None, "why": f"{m.name} has no chat template", "layers": [], "sha256": None,
                "data_hash": None}
    layers = [int(L) for L in resolve_layers(m, cfg.layers)]
    build, _, _ = caa_items(b, n_build=cfg.n_build, n_select=cfg.n_select, n_test=cfg.n_test or None, seed=seed)
    key = data_hash(m.weights_hash, build, layers, "caa_vectors/mean_diff/balanced", BATCH_SIZE)
    base = Path(task["_store"]) / f"{_slug(m.name)}_caa_{_slug(b)}_{key}"
    try:
        vec = SteeringVector.load(base)
    except Exception:  # noqa: BLE001 - absent, truncated or unreadable: built again
        from workbench.models import ContextLengthError

        try:
            vec = build_caa_vectors(m, build, layers=layers, name=b, batch_size=BATCH_SIZE, progress=False)
        except ContextLengthError as e:
            return {"file": None, "why": f"the {b} items do not fit {m.name}'s context ({e})", "layers": [],
                    "sha256": None, "data_hash": None}
        vec.save(base)
    return {"file": base.name, "layers": layers, "data_hash": vec.provenance.data_hash,
            "sha256": {s: _sha256(base.with_suffix(s)) for s in (".safetensors", ".json")}}


def check_vectors(result: dict, store: str | Path) -> str | None:
    """Why a finished vector task cannot be trusted: its files in ``store`` are gone or not the files it wrote
    (sha256); changed files are deleted, so that the vector task writes them again."""
    if result.get("file") is None:
        return None
    base = Path(store) / result["file"]
    for suffix, sha in result["sha256"].items():
        p = base.with_suffix(suffix)
        if not p.is_file():
            return f"its vector file {p} is missing"
        if _sha256(p) != sha:
            for s in result["sha256"]:
                base.with_suffix(s).unlink(missing_ok=True)
            return f"its vector file {p} was changed or truncated (sha256 differs); deleted"
    return None


def sweep_task(task: dict) -> dict:
    """One (model, behaviour, layer) of the sweep: every multiplier along the stored vector ``file`` (checked
    against its ``sha256``) and along the equal-norm random direction on the test items, and the selection effect
    on the held-out pairs. Returns the single-layer sweep as JSON (:func:`steering.sweeps.caa_sweep_to_dict`)."""
    import torch

    from steering.pipelines import caa_items
    from steering.sweeps import caa_sweep, caa_sweep_to_dict
    from steering.vector import SteeringVector
    from workbench.errors import WorkbenchError

    from ..tasks import task_model

    base = Path(task["_store"]) / task["file"]
    for suffix, sha in task["sha256"].items():
        p = base.with_suffix(suffix)
        if not p.is_file() or _sha256(p) != sha:
            raise WorkbenchError(f"vector file {p} is missing or not the one built (sha256 differs); rerun with "
                                 "--resume to build it again")
    seed = int(task.get("seed", 0))
    torch.manual_seed(seed)
    m = task_model(task)
    cfg = _task_config(task)
    b, L = task["behaviour"], int(task["layer"])
    _, select, test = caa_items(b, n_build=cfg.n_build, n_select=cfg.n_select, n_test=cfg.n_test or None, seed=seed)
    vec = SteeringVector.load(base)
    sw = caa_sweep(m, {b: vec}, {b: test}, [L], cfg.multipliers, control=True, select_items={b: select}, seed=seed,
                   batch_size=BATCH_SIZE, progress=False)
    return caa_sweep_to_dict(sw)


def grid_run(ctx: Any, cfg: CAAStudy, names: Sequence[str], *, seed: int = 0, store: str | Path | None = None,
             step: Callable[[str], str] | None = None) -> list[tuple[str, str, dict]]:
    """The study on every model in ``names`` as a grid (see the module docstring); returns ``(model, step,
    payload)`` per model. ``store``: the vector store directory (default ``<run>/vectors``). ``step(model)``: the
    step name of a model (default ``caa-sweep``, with ``@<model>`` when there are several models)."""
    from dataclasses import asdict

    from ..tasks import study_task

    sec = ctx.config.model
    store = str(Path(store).resolve() if store else (ctx.out / "vectors").resolve())
    base = {"backend": sec.backend, "device": sec.device, "dtype": sec.dtype, "seed": seed}
    vecs = [{"model": n, **base, "config": asdict(cfg), "_store": store, "behaviour": b}
            for n in names for b in cfg.behaviours]
    got = ctx.grid("caa-vectors", vector_task, vecs, check=lambda r: check_vectors(r, store))
    sweeps = [{"model": v["model"], **base, "config": asdict(cfg), "_store": store, "behaviour": v["behaviour"],
               "file": r["file"], "sha256": r["sha256"], "layer": L}
              for v, r in zip(vecs, got) if r["file"] is not None for L in r["layers"]]
    parts = ctx.grid("caa-cells", sweep_task, sweeps)
    by_model: dict[str, dict] = {n: {"sweeps": [], "vector_hashes": {}} for n in names}
    for v, r in zip(vecs, got):
        if r["file"] is not None:
            by_model[v["model"]]["vector_hashes"][v["behaviour"]] = r["data_hash"]
    for t, part in zip(sweeps, parts):
        by_model[t["model"]]["sweeps"].append(part)
    step = step or (lambda n: STEP if len(names) == 1 else f"{STEP}@{n}")
    units = [(step(n), {"study": "caa", "config": asdict(cfg), "model": n, **base,
                        "config_class": f"{CAAStudy.__module__}:CAAStudy", "step": step(n),
                        "title_suffix": f" [{n}]" if len(names) > 1 else "",
                        "kwargs": {"parts": by_model[n] if by_model[n]["sweeps"] else None}})
             for n in names]
    payloads = ctx.units("caa", study_task, units)
    return [(t["model"], st, p) for (st, t), p in zip(units, payloads)]
