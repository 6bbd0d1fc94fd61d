"""``preference-dimensions``: linear probes for the six reward-model preference dimensions.

Harmlessness, helpfulness, correctness, coherence, complexity and verbosity (MRMBench protocol:
read at the last token of input + response; final layer and a sweep over layers with controls),
and the harmlessness probe cross-checked against the model's own preference between the chosen
and rejected HH-RLHF responses (shared log-prob scorer). One step per split
(:mod:`experiments.studies.preference`; TOML section ``[preference]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext
from ..studies import preference


@dataclass
class PreferenceDimensionsConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    preference: preference.PreferenceStudy = field(default_factory=preference.PreferenceStudy)


PRESETS = {
    "quick": {"preference": {"dimensions": ["harmlessness", "verbosity"], "splits": ["easy"],
                             "layers": [0.33, 1.0], "limit": 40, "n_resamples": 200}},
}


@experiment("preference-dimensions", PreferenceDimensionsConfig,
            "probes for six preference dimensions; the harmlessness probe vs the model's own preference")
def run(ctx: RunContext, cfg: PreferenceDimensionsConfig) -> None:
    if not cfg.preference.enabled:
        return
    m = ctx.model()
    for split in cfg.preference.splits:
        preference.run(ctx, m, cfg.preference, split, seed=cfg.seed)
