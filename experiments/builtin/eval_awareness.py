"""``eval-awareness``: a test-vs-deploy probe on every layer, and Probe-Rewrite-Evaluate.

Trains the evaluation-awareness probe (all layers, controls, token-artifact control) on the
project's framing set, rewrites benchmark-framed harmful requests into a user's voice by templates,
and correlates the per-prompt probe-score shift with the refusal shift measured by the shared
refusal scorer (see :func:`experiments.builtin.studies.eval_awareness_study`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from . import studies


@dataclass
class EvalAwarenessConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    layers: list[int] = field(default_factory=list)  # empty: every layer
    n_topics: int = field(default=0, metadata={"zero": "every topic of the framing set"})
    n_harmful: int = 100
    harmful_split: str = "harmful_val"
    max_new_tokens: int = 48
    n_resamples: int = 2000
    artifact: bool = True


@experiment("eval-awareness", EvalAwarenessConfig,
            "evaluation-awareness probe per layer with controls; probe-score shift vs refusal shift under "
            "deploy-style rewrites")
def run(ctx: RunContext, cfg: EvalAwarenessConfig) -> None:
    m = ctx.model()
    studies.eval_awareness_study(ctx, m, layers=cfg.layers or None, n_topics=cfg.n_topics or None,
                                 n_harmful=cfg.n_harmful, harmful_split=cfg.harmful_split,
                                 max_new_tokens=cfg.max_new_tokens, n_resamples=cfg.n_resamples,
                                 artifact=cfg.artifact, seed=cfg.seed)
