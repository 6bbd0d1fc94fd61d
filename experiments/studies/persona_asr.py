"""Steering toward undesirable personas: the coefficient against attack success on harmful requests.

Internal: the steering coefficient along each persona vector (:func:`steering.persona_vectors`).
Behavioural: attack success rate (the shared ASR scorer: a completion that does not refuse counts as
a success) on held-out harmful requests, with the equal-norm random direction as the control
(:func:`steering.generation_sweep`). Cross-check per (persona, coefficient); expected positive.
Needs a chat template (the vectors are built from system-prompted answers): skipped with a note on
a model without one.

As a batch job (:func:`grid_run`) the sweep is a grid on the executor: a vector task per model builds every
persona's vector (one call, as the one-process study does) into the vector store (a directory the workers share;
written atomically, each file's sha256 recorded), a task per (model, persona, coefficient) generates and scores the
completions steered along that persona's vector and along the equal-norm random direction (and unsteered) and
returns them as JSON, and a final unit per model merges the coefficients
(:func:`steering.sweeps.merge_generation_sweeps`) into the study's tables and cross-check, equal to the one-process
study's. Every task's result is a resumable shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from workbench.layers import LayerSpec

from ..study import StudyResult, estimate_dict, skipped

__all__ = ["PersonaASRStudy", "STEP", "compute", "run", "vectors_task", "cell_task", "check_vectors", "grid_run"]

STEP = "persona-asr"
TITLE = "Undesirable personas: steering coefficient vs attack success"


@dataclass
class PersonaASRStudy:
    """``[attack_success]``: persona steering coefficient vs attack success.

    Attributes:
        enabled: run this study.
        personas: shipped persona names to steer toward.
        layer: the steering layer (a layer spec naming one layer).
        coefficients: steering coefficients (multiples of the persona vector).
        n_harmful: harmful requests the completions are scored on.
        harmful_source: which shipped harmful set (see ``steering.data.load_harmful``).
        n_questions: persona-eliciting questions used to build each vector.
        n_pairs: high/low system-prompt pairs per persona used to build each vector.
        max_new_tokens: tokens generated per answer.
    """

    enabled: bool = True
    personas: list[str] = field(default_factory=lambda: ["psychopathy", "power_seeking", "deception"])
    layer: LayerSpec = 0.4
    coefficients: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0])
    n_harmful: int = 24
    harmful_source: str = "jailbreakbench"
    n_questions: int = 8
    n_pairs: int = 3
    max_new_tokens: int = 32


def compute(ctx: Any, m: Any, cfg: PersonaASRStudy, *, seed: int = 0, parts: dict | None = None) -> StudyResult:
    """The study on ``m``. ``parts`` (from the batch grid, :func:`grid_run`): ``{persona: [single-coefficient
    generation sweeps as JSON]}``, merged here; without it the vectors and sweeps are computed here."""
    import pandas as pd

    from steering.data import load_harmful
    from steering.personas import load_personas
    from steering.sweeps import generation_sweep, generation_sweep_from_dict, merge_generation_sweeps
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layer
    from workbench.scorers import ASRScorer
    from workbench.stats import paired_difference

    if not m.facts.has_chat_template:
        return skipped(TITLE, "persona_asr", f"{m.name} has no chat template, and persona vectors are built from "
                       "system-prompted answers")
    layer = resolve_layer(m, cfg.layer)
    ps = load_personas(list(cfg.personas))
    pv = None if parts is not None else _vectors(m, cfg, layer, seed=seed, progress=ctx.progress)
    prompts = load_harmful(cfg.harmful_source, n=cfg.n_harmful, seed=seed)
    ctx.record_data("persona_asr_prompts", prompts)
    units, xs, ys, rows, results, metrics, effects = [], [], [], [], {}, {}, {}
    for p in ps:
        if pv is not None:
            gs = generation_sweep(m, pv[p.name], prompts, [layer], cfg.coefficients, ASRScorer(),
                                  max_new_tokens=cfg.max_new_tokens, seed=seed, progress=ctx.progress)
        else:
            assert parts is not None
            gs = merge_generation_sweeps([generation_sweep_from_dict(x) for x in parts[p.name]])
        for c in gs.coefficients:
            for kind in ("steer", "random"):
                e = gs.estimate(layer, c, kind)
                rows.append({"persona": p.name, "coefficient": c, "kind": kind, "asr": e.value, "ci_low": e.ci_low,
                             "ci_high": e.ci_high})
                if kind == "steer":
                    units.append(f"{p.name} x{c:g}")
                    xs.append(c)
                    ys.append(e.value)
        metrics[f"{p.name}: ASR change at x{max(cfg.coefficients):g}"] = estimate_dict(gs.effect(layer))
        metrics[f"{p.name}: random-control change"] = estimate_dict(gs.effect(layer, "random"))
        results[f"asr_{p.name}"] = gs
        hi = max(gs.coefficients)
        effects[p.name] = {"effect": estimate_dict(gs.effect(layer)),
                           "random_effect": estimate_dict(gs.effect(layer, "random")),
                           "steer_minus_random": estimate_dict(paired_difference(
                               gs.scores[(layer, float(hi), "steer")].values,
                               gs.scores[(layer, float(hi), "random")].values, seed=gs.seed,
                               statistic=f"ASR steered - random at x{hi:g}"))}
    cc = CrossCheck.from_measurements(units, xs, ys, internal_name="steering coefficient",
                                      behavioural_name="attack success rate", unit_name="persona x coefficient",
                                      seed=seed, provenance=m.provenance(seed=seed, extra={"study": "persona_asr",
                                                                                           "layer": layer}))
    return StudyResult(
        TITLE,
        f"Persona vectors for {', '.join(p.name for p in ps)} at layer {layer}, added while generating answers "
        f"to {len(prompts)} harmful requests ({cfg.harmful_source}), at coefficients {list(cfg.coefficients)}. "
        "Behaviour: attack success rate (shared ASR scorer, refusal-phrase judge) with Wilson CIs; the equal-norm "
        "random direction is the control. Expected positive.",
        "persona_asr", cc, results=results, tables_off=tuple(results), tables={"persona_asr": pd.DataFrame(rows)},
        metrics=metrics,
        payload={"layer": layer, "n_layers": int(m.facts.n_layers), "coefficients": sorted(set(cfg.coefficients)),
                 "personas": effects})


def run(ctx: Any, m: Any, cfg: PersonaASRStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))


def _vectors(m: Any, cfg: PersonaASRStudy, layer: int, *, seed: int, progress: bool = False) -> Any:
    """Every persona's vector at ``layer``, in one call (the batches of the one-process study)."""
    from steering.personas import load_personas, persona_vectors

    return persona_vectors(m, load_personas(list(cfg.personas)), [layer], n_questions=cfg.n_questions,
                           n_pairs=cfg.n_pairs, max_new_tokens=cfg.max_new_tokens, seed=seed, progress=progress)


# -- the sweep as a grid of tasks (JSON in, JSON out; module-level, so any executor runs them) ----------------
def _task_config(task: dict) -> PersonaASRStudy:
    from ..config import config_from_dict

    return config_from_dict(PersonaASRStudy, task["config"])


def _sha256(path: Path) -> str:
    from ..writer import _file_sha

    return _file_sha(path)


def vectors_task(task: dict) -> dict:
    """Build one model's persona vectors into the vector store ``_store`` (a directory per model weights, personas,
    layer and build settings; :meth:`steering.personas.PersonaVectors.save`, atomic files); one already there is
    reused when it reads back. Returns ``{"dir", "sha256": {file: hash}, "layer"}`` (``dir`` None, with ``why``,
    when the model has no chat template)."""
    from steering.personas import PersonaVectors
    from workbench.layers import resolve_layer
    from workbench.results import data_hash

    from ..tasks import task_model
    from ..writer import _slug

    m = task_model(task)
    cfg = _task_config(task)
    seed = int(task.get("seed", 0))
    if not m.facts.has_chat_template:
        return {"dir": None, "why": f"{m.name} has no chat template", "sha256": {}, "layer": None}
    layer = int(resolve_layer(m, cfg.layer))
    key = data_hash(m.weights_hash, list(cfg.personas), layer, cfg.n_questions, cfg.n_pairs, cfg.max_new_tokens,
                    seed, "persona_vectors/response")
    d = Path(task["_store"]) / f"{_slug(m.name)}_personas_{key}"
    try:
        pv = PersonaVectors.load(d)
        assert set(pv.vectors) == set(cfg.personas)
    except Exception:  # noqa: BLE001 - absent, truncated or unreadable: built again
        _vectors(m, cfg, layer, seed=seed).save(d)
    return {"dir": d.name, "layer": layer,
            "sha256": {f.name: _sha256(f) for f in sorted(d.iterdir()) if f.is_file()}}


def check_vectors(result: dict, store: str | Path) -> str | None:
    """Why a finished vector task cannot be trusted: a file of its directory in ``store`` is gone or not the file
    it wrote (sha256); the directory is then deleted, so that the vector task writes it again."""
    import shutil

    if result.get("dir") is None:
        return None
    d = Path(store) / result["dir"]
    for name, sha in result["sha256"].items():
        p = d / name
        if not p.is_file() or _sha256(p) != sha:
            shutil.rmtree(d, ignore_errors=True)
            return f"its vector file {p} is missing, changed or truncated (sha256 differs); deleted"
    return None


def cell_task(task: dict) -> dict:
    """One (model, persona, coefficient): completions of the harmful requests steered along the stored persona
    vector (directory ``dir`` in ``_store``, checked against ``sha256``) and along the equal-norm random direction
    at that coefficient (and unsteered), scored by the shared ASR scorer. Returns the generation sweep as JSON
    (:func:`steering.sweeps.generation_sweep_to_dict`)."""
    import torch

    from steering.data import load_harmful
    from steering.personas import PersonaVectors
    from steering.sweeps import generation_sweep, generation_sweep_to_dict
    from workbench.errors import WorkbenchError
    from workbench.scorers import ASRScorer

    from ..tasks import task_model

    d = Path(task["_store"]) / task["dir"]
    for name, sha in task["sha256"].items():
        if not (d / name).is_file() or _sha256(d / name) != sha:
            raise WorkbenchError(f"vector file {d / name} is missing or not the one built (sha256 differs); rerun "
                                 "with --resume to build it again")
    seed = int(task.get("seed", 0))
    torch.manual_seed(seed)
    m = task_model(task)
    cfg = _task_config(task)
    prompts = load_harmful(cfg.harmful_source, n=cfg.n_harmful, seed=seed)
    vec = PersonaVectors.load(d)[task["persona"]]
    gs = generation_sweep(m, vec, prompts, [int(task["layer"])], [float(task["coefficient"])], ASRScorer(),
                          max_new_tokens=cfg.max_new_tokens, seed=seed)
    return generation_sweep_to_dict(gs)


def grid_run(ctx: Any, cfg: PersonaASRStudy, names: Sequence[str], *, seed: int = 0, store: str | Path | None = None,
             step: Callable[[str], str] | None = None) -> list[tuple[str, str, dict]]:
    """The study on every model in ``names`` as a grid (see the module docstring); returns ``(model, step,
    payload)`` per model. ``store``: the vector store directory (default ``<run>/vectors``). ``step(model)``: the
    step name of a model (default ``persona-asr``, with ``@<model>`` when there are several models)."""
    from dataclasses import asdict

    from ..tasks import study_task

    sec = ctx.config.model
    store = str(Path(store).resolve() if store else (ctx.out / "vectors").resolve())
    base = {"backend": sec.backend, "device": sec.device, "dtype": sec.dtype, "seed": seed}
    vecs = [{"model": n, **base, "config": asdict(cfg), "_store": store} for n in names]
    got = ctx.grid("persona-asr-vectors", vectors_task, vecs, check=lambda r: check_vectors(r, store))
    cells = [{"model": v["model"], **base, "config": asdict(cfg), "_store": store, "dir": r["dir"],
              "sha256": r["sha256"], "layer": r["layer"], "persona": p, "coefficient": float(c)}
             for v, r in zip(vecs, got) if r["dir"] is not None for p in cfg.personas for c in (list(dict.fromkeys(cfg.coefficients)) or [0.0])]
    parts = ctx.grid("persona-asr-cells", cell_task, cells)
    by_model: dict[str, dict] = {n: {} for n in names}
    for t, part in zip(cells, parts):
        by_model[t["model"]].setdefault(t["persona"], []).append(part)
    step = step or (lambda n: STEP if len(names) == 1 else f"{STEP}@{n}")
    units = [(step(n), {"study": "persona_asr", "config": asdict(cfg), "model": n, **base,
                        "config_class": f"{PersonaASRStudy.__module__}:PersonaASRStudy", "step": step(n),
                        "title_suffix": f" [{n}]" if len(names) > 1 else "",
                        "kwargs": {"parts": by_model[n] or None}})
             for n in names]
    payloads = ctx.units("persona-asr", study_task, units)
    return [(t["model"], st, p) for (st, t), p in zip(units, payloads)]
