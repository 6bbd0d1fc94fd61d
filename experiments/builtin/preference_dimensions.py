"""``preference-dimensions``: linear probes for the six reward-model preference dimensions.

Harmlessness, helpfulness, correctness, coherence, complexity and verbosity (MRMBench protocol:
read at the last token of input + response; final layer and a sweep over layers with controls),
and the harmlessness probe cross-checked against the model's own preference between the chosen
and rejected HH-RLHF responses (shared log-prob scorer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from . import studies


@dataclass
class PreferenceDimensionsConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    dimensions: list[str] = field(default_factory=list)  # empty: all six
    splits: list[str] = field(default_factory=lambda: ["easy", "hard"])
    layers: list[int] = field(default_factory=list)  # empty: every layer
    limit: int = 150
    n_resamples: int = 1000


@experiment("preference-dimensions", PreferenceDimensionsConfig,
            "probes for six preference dimensions; the harmlessness probe vs the model's own preference")
def run(ctx: RunContext, cfg: PreferenceDimensionsConfig) -> None:
    m = ctx.model()
    for split in cfg.splits:
        studies.preference_study(ctx, m, dimensions=cfg.dimensions or None, split=split, layers=cfg.layers or "all",
                                 limit=cfg.limit or None, n_resamples=cfg.n_resamples, seed=cfg.seed,
                                 step=f"preference-{split}")
