"""Personas: a persona imposed by system prompt vs by steering with its persona vector, at matched strength.

Persona vectors (Chen et al. 2025: mean activation difference of persona-prompted vs neutral answers)
at one layer, their strength matched to the persona prompts' next-token KL, and three conditions
(baseline, system prompt, steering) scored by the same shared scorers: agreement with the persona's
statements, attack success on harmful requests through the refusal scorer, and a trait judge where
enabled (:func:`steering.pipelines.run_persona_experiment`). The cross-check: per (persona, scorer),
the steering effect (steered - baseline, internal intervention) against the prompting effect
(prompted - baseline, behaviour as users elicit it). Expected: positive. Needs a chat template
(personas are system prompts): skipped with a note on a model without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workbench.layers import LayerSpec

from ..study import StudyResult, skipped

__all__ = ["PersonaStudy", "STEP", "compute", "run"]

STEP = "personas"
TITLE = "Personas: prompted vs steered"


@dataclass
class PersonaStudy:
    """``[personas]``: personas by system prompt vs by steering at matched strength.

    Attributes:
        enabled: run this study.
        personas: shipped persona names (``steering/data/personas.json``); empty: every shipped persona.
        layer: the steering layer (a layer spec naming one layer; 0.4 is layer 12 of 30).
        n_questions: persona-eliciting questions used to build each vector.
        n_pairs: high/low system-prompt pairs per persona used to build each vector.
        n_statements: persona statements per persona for the statements scorer (Yes/No balanced).
        n_harmful: harmful requests for the refusal (attack success) scorer; 0: no such scorer.
        max_new_tokens: tokens generated per answer (vector building and the generation scorers).
        judge: also score a 0-100 trait judge (the model itself; weak on small models).
        n_kl_prompts: neutral prompts the strength is matched on; 0: every shipped neutral prompt.
    """

    enabled: bool = True
    personas: list[str] = field(default_factory=list)
    layer: LayerSpec = 0.4
    n_questions: int = 8
    n_pairs: int = 3
    n_statements: int = 40
    n_harmful: int = field(default=16, metadata={"zero": "no harmful-request scorer"})
    max_new_tokens: int = 32
    judge: bool = True
    n_kl_prompts: int = field(default=0, metadata={"zero": "every shipped neutral prompt"})


def compute(ctx: Any, m: Any, cfg: PersonaStudy, *, seed: int = 0) -> StudyResult:
    from steering.compare import persona_effects
    from steering.pipelines import run_persona_experiment
    from workbench.crosscheck import CrossCheck
    from workbench.layers import resolve_layer

    if not m.facts.has_chat_template:
        return skipped(TITLE, "personas", f"{m.name} has no chat template, and personas are imposed by system prompt")
    from workbench.models import ContextLengthError

    layer = resolve_layer(m, cfg.layer)
    try:
        exp = run_persona_experiment(m, cfg.personas or None, layer=layer, n_questions=cfg.n_questions,
                                     n_pairs=cfg.n_pairs, max_new_tokens=cfg.max_new_tokens,
                                     n_statements=cfg.n_statements, n_harmful=cfg.n_harmful, judge=cfg.judge,
                                     n_kl_prompts=cfg.n_kl_prompts or None, seed=seed, progress=ctx.progress)
    except ContextLengthError as e:
        return skipped(TITLE, "personas", f"the persona prompts do not fit {m.name}'s context of {m.facts.n_ctx} "
                       f"tokens ({e})")
    comp = exp.comparison
    ctx.record_data("personas", sorted(comp.personas))
    units, steer, prompt = persona_effects(comp)
    cc = CrossCheck.from_measurements(units, steer, prompt, internal_name="steering effect",
                                      behavioural_name="prompting effect", unit_name="persona x scorer", seed=seed,
                                      provenance=m.provenance(seed=seed, extra={"study": "personas", "layer": layer}))
    corr = comp.correlation_table()
    metrics = {"steering layer": layer, "strength matching": "median_prompt_kl"}
    for _, r in corr.iterrows():
        metrics[f"Spearman prompt vs steer ({r.get('scorer', '')})"] = {k: r[k] for k in r.index if k != "scorer"}
    return StudyResult(
        TITLE,
        f"{len(set(u.split(' / ')[0] for u in units))} personas imposed by a system prompt and by adding the "
        f"persona vector (mean activation difference of persona-prompted vs neutral answers) at layer {layer}, "
        "its strength matched to the prompts' next-token KL. Both scored by the same shared scorers. "
        "Cross-check per (persona, scorer): steering effect (steered - baseline) vs prompting effect "
        "(prompted - baseline); expected positive.",
        "personas", cc, results={"persona_comparison": comp},
        tables={"persona_correlations": corr, "persona_strength": comp.strength_table()},
        metrics=metrics, notes=list(comp.notes)[:5],
        payload={"effects": _effects(comp)})


def _effects(comp: Any) -> list[dict]:
    """Per (persona, method, scorer): the shift from the baseline (for comparisons across models)."""
    import math

    df = comp.to_dataframe()
    d = df[df["method"].isin(["prompt", "steer"])]
    return [{"persona": r.persona, "method": r.method, "scorer": r.scorer,
             "shift": float(r.shift) if r.shift is not None and math.isfinite(float(r.shift)) else None}
            for r in d.itertuples()]


def run(ctx: Any, m: Any, cfg: PersonaStudy, *, seed: int = 0, step: str = STEP) -> dict:
    return ctx.study(step, lambda: compute(ctx, m, cfg, seed=seed))
