"""``preference-dimensions``: linear probes for the six reward-model preference dimensions.

Harmlessness, helpfulness, correctness, coherence, complexity and verbosity (MRMBench protocol:
read at the last token of input + response; final layer and a sweep over layers with controls),
and the harmlessness probe cross-checked against the model's own preference between the chosen
and rejected HH-RLHF responses (shared log-prob scorer). One step per split
(:mod:`experiments.studies.preference`; TOML section ``[preference]``).

A grid on the executor (:func:`experiments.studies.preference.grid_run`): activations collected once per (model,
split, dimension) into the activation store (``activation_store``, default ``<run>/activations``; give a
directory every worker sees when they run on other machines), probes per layer read from it. Several models
(``--model A --model B``) give one step per model per split and ``compare-preference-<split>``: each
dimension's probe AUROC by depth, every model on one figure.
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
    #: directory of the activation store the grid's tasks share ("": ``activations/`` in the run directory)
    activation_store: str = ""
    preference: preference.PreferenceStudy = field(default_factory=preference.PreferenceStudy)


PRESETS = {
    "quick": {"preference": {"dimensions": ["harmlessness", "verbosity"], "splits": ["easy"],
                             "layers": [0.33, 1.0], "limit": 40, "n_resamples": 200}},
}


@experiment("preference-dimensions", PreferenceDimensionsConfig,
            "probes for six preference dimensions; the harmlessness probe vs the model's own preference; several "
            "models (--model A --model B) compared by depth")
def run(ctx: RunContext, cfg: PreferenceDimensionsConfig) -> None:
    if not cfg.preference.enabled:
        return
    names = ctx.model_names()
    done = preference.grid_run(ctx, cfg.preference, names, seed=cfg.seed, store=cfg.activation_store or None)
    if len(names) > 1:
        from ..comparison import compare_layer_curves

        for split in cfg.preference.splits:
            compare_layer_curves(ctx, f"compare-preference-{split}", [(n, cfg.model.backend) for n in names],
                                 {n: p for n, sp, _, p in done if sp == split}, seed=cfg.seed,
                                 what=f"preference probes ({split} split)")
