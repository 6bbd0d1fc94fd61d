"""Evaluation awareness on Nguyen et al.'s own sets (read from ``../shared/data``; they may not ship).

Three checks of the probe the ``eval_awareness`` study trains, on the published data of Nguyen et al.
(2025, "Probing Evaluation Awareness of Language Models"), whose files carry no licence and so are read
from the shared data folder (``$WORKBENCH_DATA`` or ``../shared/data``), never copied into the repository;
the step is skipped with a note where the folder is absent:

1. the contrastive set read at the answer token, as the paper does: per-layer AUROC with held-out
   answer-letter templates (a probe that reads the letter, not what it answers, falls below chance
   there), label-shuffle and random-direction controls, and the token-artifact control (the answer
   removed: read at the last prompt token);
2. transfer: the project's framing probe (the ``eval_awareness`` study's, same settings) scoring the
   contrastive set's test-framed questions against natural Dolly/WildChat prompts (AUROC);
3. Probe-Rewrite-Evaluate on the contrastive set's questions: the score shift when each is rewritten
   into a user's voice by template.

Probe-only: no behavioural measurement, so no cross-check (the ``eval_awareness`` study has it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workbench.layers import LayerSpec

from ..study import StudyResult, estimate_dict, fits_context, skipped
from .eval_awareness import framing_for

__all__ = ["NguyenSetsStudy", "STEP", "compute", "run"]

STEP = "eval-awareness-nguyen"
TITLE = "Evaluation awareness on Nguyen et al.'s sets: answer-token probe, transfer, rewrites"


@dataclass
class NguyenSetsStudy:
    """``[nguyen]``: the probe checks on Nguyen et al.'s sets (``<shared data>/eval_awareness``).

    Attributes:
        enabled: run this study (skipped with a note when the shared data folder is absent).
        data: the folder holding ``contrastive_dataset.json``; empty: ``eval_awareness/`` of the shared
            data folder (``$WORKBENCH_DATA``, else ``../shared/data`` beside the repository).
        layers: layers of the contrastive-set sweep (a layer spec).
        n_contrastive: contrastive records used (two examples each); 0: every record.
        n_transfer: test-framed questions, and natural prompts (half Dolly, half WildChat), in the transfer test.
        transfer_select_fraction: the part of the transfer set (stratified, seeded) on which a layer is selected
            (the per-layer transfer AUROCs and the surface baseline's are then computed on the rest); 0: no split,
            every layer's transfer on the whole set and no layer selected there.
        n_shift: questions rewritten for Probe-Rewrite-Evaluate.
        n_resamples: bootstrap resamples of every interval.
    """

    enabled: bool = True
    data: str = ""
    layers: list[LayerSpec] = field(default_factory=lambda: ["all"])
    n_contrastive: int = field(default=0, metadata={"zero": "every record"})
    n_transfer: int = 100
    transfer_select_fraction: float = field(default=0.5, metadata={"zero": "no split"})
    n_shift: int = 60
    n_resamples: int = 2000


def _folder(cfg: NguyenSetsStudy) -> Path | None:
    if cfg.data:
        return Path(cfg.data).expanduser()
    from steering.data import DataError, data_root

    try:
        return data_root() / "eval_awareness"
    except DataError:
        return None


def compute(ctx: Any, m: Any, cfg: NguyenSetsStudy, framing: Any, *, seed: int = 0) -> StudyResult:
    """``framing``: the experiment's ``EvalAwarenessStudy`` config (the framing probe is trained as there), or
    its dict (from a task)."""
    import pandas as pd

    if isinstance(framing, dict):
        from ..config import config_from_dict
        from .eval_awareness import EvalAwarenessStudy

        framing = config_from_dict(EvalAwarenessStudy, framing)

    from probe.activations import collect_cached
    from probe.controls import token_artifact_control
    from probe.datasets import Example, LabelledPromptSet, load_contrastive, load_prompt_list
    from probe.eval_awareness import eval_awareness_probe, framing_shift, layer_transfer
    from probe.metrics import auroc_estimate
    from probe.sweep import layer_sweep
    from workbench.layers import resolve_layers

    ea = _folder(cfg)
    if ea is None or not (ea / "contrastive_dataset.json").is_file():
        where = ea or "no shared data folder"
        return skipped(TITLE, "nguyen", f"Nguyen et al.'s contrastive set was not found ({where}; set [nguyen] data "
                       "or WORKBENCH_DATA); it is not shipped (no licence)")
    cache = ctx.out / "cache" / "activations"
    notes: list[str] = []
    layers = resolve_layers(m, cfg.layers)
    con = load_contrastive(ea / "contrastive_dataset.json")
    if cfg.n_contrastive:
        con = con.subset(range(min(2 * cfg.n_contrastive, len(con))))
    fit = fits_context(m, [e.prompt for e in con.examples], chat=bool(m.facts.has_chat_template), reserve=16)
    if not all(fit):
        notes.append(f"dropped {fit.count(False)} of {len(con)} contrastive examples longer than {m.name}'s context")
        con = con.subset([i for i, ok in enumerate(fit) if ok])
    ctx.record_data("nguyen_contrastive", [(str(e.prompt), e.output, e.label) for e in con.examples])
    kw = dict(layers=layers, progress=ctx.progress)
    acts = collect_cached(m, con, cache, read="last", **kw)
    removed = collect_cached(m, con, cache, read="last_prompt", **kw)
    sw = layer_sweep(acts, seed=seed, n_resamples=cfg.n_resamples)
    best = sw.best_layer()
    i = sw.layers.index(best)
    art = token_artifact_control(m, con, artifact=None, layers=sorted({best, layers[-1]}), seed=seed,
                                 n_resamples=cfg.n_resamples, removed=removed, present=acts, cache_dir=cache)
    metrics = {"contrastive set: best layer": best, "AUROC (answer token)": estimate_dict(sw.estimates()[i])}
    for c in ("held_out_templates", "label_shuffle"):
        if c in sw.conditions:
            metrics[f"AUROC, {c.replace('_', ' ')}"] = estimate_dict(sw.estimates(None, c)[i])
    if "random_direction" in sw.conditions:
        metrics["AUROC, random directions"] = estimate_dict(sw.estimates("random", "random_direction")[i])
    notes.append(art.summary())

    fr, fr_notes = framing_for(m, framing, seed=seed)
    notes += fr_notes
    res = eval_awareness_probe(m, fr, layers=resolve_layers(m, framing.layers), seed=seed,
                               n_resamples=framing.n_resamples, artifact=False, cache_dir=cache, progress=ctx.progress)
    rng = np.random.default_rng(seed)
    recs = [r["question"] for r in json.loads((ea / "contrastive_dataset.json").read_text())]
    qs = [recs[j] for j in rng.choice(len(recs), min(cfg.n_transfer, len(recs)), replace=False)]
    dep: list = []
    for f in ("contrastive_dataset_dolly.json", "contrastive_dataset_wildchat.json"):
        path = ea / "deploy_controls_marinomaria" / f
        if path.is_file():
            d = load_prompt_list(path, 0)
            dep += [d.examples[j] for j in rng.choice(len(d), min(cfg.n_transfer // 2, len(d)), replace=False)]
    tables = {"contrastive_layers": sw.layer_table()}
    results: dict[str, Any] = {"contrastive_sweep": sw, "contrastive_artifact": art}
    if dep:
        tr_set = LabelledPromptSet("transfer_shared", [Example(q, 1, None, f"q{j}", "contrastive_question")
                                                       for j, q in enumerate(qs)] + dep, ("deploy", "test"),
                                   read="last_prompt")
        fit = fits_context(m, [e.prompt for e in tr_set.examples], chat=bool(m.facts.has_chat_template))
        tr_set = tr_set.subset([j for j, ok in enumerate(fit) if ok])
        tr_acts = collect_cached(m, tr_set, cache, layers=res.sweep.layers, progress=ctx.progress)
        raw = res.probe.decision(tr_acts.layer(res.layer))
        tr = auroc_estimate(raw, tr_acts.labels, ci="bootstrap", n_resamples=cfg.n_resamples, seed=seed)
        norm = (raw - res.deploy_mean) / (res.test_mean - res.deploy_mean)
        y = tr_acts.labels
        metrics.update({f"transfer AUROC (framing probe, layer {res.layer})": estimate_dict(tr),
                        "transfer: mean normalised score, test-framed questions": float(norm[y == 1].mean()),
                        "transfer: mean normalised score, natural prompts": float(norm[y == 0].mean())})
        lt = layer_transfer(res.sweep, tr_acts, method=res.method, chosen_layer=res.layer, surface=res.surface,
                            prompts=[e.prompt for e in tr_set.examples], seed=seed, n_resamples=cfg.n_resamples,
                            select_fraction=cfg.transfer_select_fraction or None)
        tables["transfer_layers"] = lt.to_dataframe()
        results["transfer_layers"] = lt
        part = " (report part)" if lt.selection is not None else ""
        if lt.surface is not None:
            metrics[f"transfer AUROC{part}, surface-feature baseline"] = estimate_dict(lt.surface)
            i_ch = lt.layers.index(res.layer)
            metrics[f"transfer{part}: layer {res.layer} minus the surface baseline (paired DeLong)"] = \
                estimate_dict(lt.vs_surface[i_ch]) if lt.vs_surface else None
            metrics[f"transfer{part}: layer {res.layer} beats the surface baseline"] = bool(lt.beats_surface()[i_ch])
            metrics[f"transfer{part}: layers beating the surface baseline"] = [
                L for L, b in zip(lt.layers, lt.beats_surface()) if b]
        if lt.selection is not None:
            L = lt.selection.layer
            metrics[f"transfer: layer selected on a selection part ({lt.n_selection} prompts)"] = L
            metrics[f"transfer (report part): AUROC at layer {L}"] = estimate_dict(lt.auroc[lt.layers.index(L)])
            if lt.surface is not None:
                i_L = lt.layers.index(L)
                metrics[f"transfer (report part): layer {L} minus the surface baseline (paired DeLong)"] = \
                    estimate_dict(lt.vs_surface[i_L]) if lt.vs_surface else None
                metrics[f"transfer (report part): layer {L} beats the surface baseline"] = bool(lt.beats_surface()[i_L])
        metrics[f"transfer{part}: best-transferring layer (read only; chosen on the numbers it reports)"] = \
            lt.best_transfer_layer()
        tables["transfer"] = pd.DataFrame({"prompt": [str(e.prompt) for e in tr_set.examples],
                                           "label": tr_acts.labels, "normalised_score": norm})
    else:
        notes.append("transfer test skipped (per-layer transfer and the surface baseline's too): the Dolly/WildChat "
                     "deploy controls were not found")
    sh = [q for q, ok in zip(recs[: cfg.n_shift], fits_context(m, recs[: cfg.n_shift], reserve=64)) if ok]
    fs = framing_shift(res, m, sh, seed=seed, n_resamples=cfg.n_resamples, cache_dir=cache)
    metrics.update({"rewrites: mean score shift (rewrite - original)": estimate_dict(fs.mean_shift),
                    "rewrites: fraction scored less test-like": estimate_dict(fs.fraction_lower)})
    return StudyResult(
        TITLE,
        f"(1) Nguyen et al.'s contrastive set ({len(con)} examples), read at the answer token as in the paper, "
        "with held-out answer-letter templates, label-shuffle and random-direction controls, and the token-artifact "
        "control (answer removed). (2) Transfer: the project's framing probe at every layer (scoring layer "
        f"{res.layer}, chosen on held-out templates) and the surface-feature baseline on the set's test-framed "
        "questions vs natural Dolly/WildChat prompts, with a layer also selected on one part of that set and "
        "scored on the other. (3) Probe-Rewrite-"
        f"Evaluate: {len(sh)} of its questions rewritten into a user's voice. Probe-only: no cross-check.",
        "nguyen", results={**results, "nguyen_framing_shift": fs},
        tables_off=("contrastive_sweep",), tables=tables, metrics=metrics, notes=notes,
        payload={"best_layer": best, "auroc": sw.estimates()[i].value, "mean_shift": fs.mean_shift.value})


def run(ctx: Any, m: Any, cfg: NguyenSetsStudy, framing: Any, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, framing, seed=seed))
