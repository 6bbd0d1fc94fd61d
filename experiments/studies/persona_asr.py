"""Steering toward undesirable personas: the coefficient against attack success on harmful requests.

Internal: the steering coefficient along each persona vector (:func:`steering.persona_vectors`).
Behavioural: attack success rate (the shared ASR scorer: a completion that does not refuse counts as
a success) on held-out harmful requests, with the equal-norm random direction as the control
(:func:`steering.generation_sweep`). Cross-check per (persona, coefficient); expected positive.
Needs a chat template (the vectors are built from system-prompted answers): skipped with a note on
a model without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.layers import LayerSpec

from ..study import StudyResult, estimate_dict, skipped

__all__ = ["PersonaASRStudy", "STEP", "compute", "run"]

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


def compute(ctx: Any, m: Any, cfg: PersonaASRStudy, *, seed: int = 0) -> StudyResult:
    import pandas as pd

    from steering.data import load_harmful
    from steering.personas import load_personas, persona_vectors
    from steering.sweeps import generation_sweep
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layer
    from workbench.scorers import ASRScorer

    if not m.facts.has_chat_template:
        return skipped(TITLE, "persona_asr", f"{m.name} has no chat template, and persona vectors are built from "
                       "system-prompted answers")
    layer = resolve_layer(m, cfg.layer)
    ps = load_personas(list(cfg.personas))
    pv = persona_vectors(m, ps, [layer], n_questions=cfg.n_questions, n_pairs=cfg.n_pairs,
                         max_new_tokens=cfg.max_new_tokens, seed=seed, progress=ctx.progress)
    prompts = load_harmful(cfg.harmful_source, n=cfg.n_harmful, seed=seed)
    ctx.record_data("persona_asr_prompts", prompts)
    units, xs, ys, rows, results, metrics = [], [], [], [], {}, {}
    for p in ps:
        gs = generation_sweep(m, pv[p.name], prompts, [layer], cfg.coefficients, ASRScorer(),
                              max_new_tokens=cfg.max_new_tokens, seed=seed, progress=ctx.progress)
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
        metrics=metrics)


def run(ctx: Any, m: Any, cfg: PersonaASRStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
