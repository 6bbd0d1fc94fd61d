"""``induction-signatures``: induction heads found by their attention pattern and confirmed by ablation.

On each configured model: every head's induction and previous-token scores and single-head ablations
of the top and of random heads against copying (``[induction]``, cross-checked), and the targeted vs
matched random protocol with the ICL score (``[protocol]``). Then the same on the project's 2-layer
attention-only model, whose planted previous-token and induction heads are the ground truth
(``[shipped_model]``; skipped with a note where the model is not shipped in this checkout).

``[induction]`` and ``[protocol]`` are (model, study) units on the executor (:func:`experiments.tasks.study_units`,
as in ``cross-check``). Several models (``--model A --model B``): a step per model per study
(``<step>@<model>``), the shipped model once, and the comparison steps of
:func:`experiments.comparison.write_comparisons`: ``compare-induction`` (each model's top heads with their depth,
and the copying damage of ablating a top head vs a random one) and ``compare-protocol`` (each model's
targeted vs matched random ablation: loss increases, targeted - random in loss and in copying log p, with CIs).
With one model the steps are ``induction-heads``, ``induction-protocol``, ``induction-model-heads``,
``induction-model-protocol``, as ever.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext, Section
from ..studies import induction, induction_protocol


@dataclass
class ShippedModelSection:
    """``[shipped_model]``: the same two studies on the shipped 2-layer induction model (circuits/assets).

    The other sizes (sequences, copy strings, random sets) are those of ``[induction]`` and ``[protocol]``.

    Attributes:
        enabled: run the studies on the shipped model too.
        n_top: top heads ablated one at a time (the model has 2 planted heads: 0.0 previous-token, 1.0 induction).
        n_random: other heads ablated one at a time (the model has 8 heads).
        half: half-length of the repeated sequences (the model was trained on 64-token sequences: 1 + 2 x 25 <= 64).
        k_percent: top share of heads per layer ablated in the protocol (25% of 4 heads: one per layer).
    """

    enabled: bool = True
    n_top: int = 2
    n_random: int = 6
    half: int = 25
    k_percent: float = 25.0


@dataclass
class InductionSignaturesConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    induction: induction.InductionStudy = field(default_factory=induction.InductionStudy)
    protocol: induction_protocol.InductionProtocolStudy = field(
        default_factory=induction_protocol.InductionProtocolStudy)
    shipped_model: ShippedModelSection = field(default_factory=ShippedModelSection)


PRESETS = {
    "quick": {"induction": {"n_top": 5, "n_random": 5, "n_seqs": 2, "n_copy": 4},
              "protocol": {"n_random_sets": 3, "n_seqs": 4, "icl": False}},
}


@experiment("induction-signatures", InductionSignaturesConfig,
            "induction heads: detector scores vs single-head and targeted-vs-random ablations, ICL score; the "
            "shipped 2-layer model as ground truth; several models (--model A --model B) compared side by side")
def run(ctx: RunContext, cfg: InductionSignaturesConfig) -> None:
    from ..comparison import write_comparisons
    from ..tasks import study_task, study_units

    names = ctx.model_names()
    # [induction] and [protocol]: a (model, study) unit each on the executor
    todo = study_units(cfg, names, [("induction", induction, {}), ("protocol", induction_protocol, {})])
    payloads = ctx.units("studies", study_task, todo) if todo else []
    if cfg.shipped_model.enabled:
        _shipped_model(ctx, cfg)
    if len(names) > 1 and todo:
        keys = {(t["study"], t["model"]): (st, p) for (st, t), p in zip(todo, payloads)}
        write_comparisons(ctx, [(n, cfg.model.backend) for n in names], {k: v[0] for k, v in keys.items()},
                          {k: v[1] for k, v in keys.items()}, seed=cfg.seed)


def _shipped_model(ctx: RunContext, cfg: InductionSignaturesConfig) -> None:
    """``[shipped_model]``: both studies on the shipped 2-layer model (planted heads: the ground truth), once
    whatever the models compared."""
    from circuits import induction_model_dir

    sm, s = cfg.shipped_model, cfg.seed
    try:
        d = induction_model_dir()
    except FileNotFoundError as e:
        msg = str(e)
        ctx.step("induction-model", lambda w: (w.section(Section(
            "Shipped induction model", "Skipped: the project's 2-layer induction model is not in this checkout.",
            notes=[msg])), {})[1])
        return
    small = ctx.model(str(d))
    if cfg.induction.enabled:
        induction.run(ctx, small, dataclasses.replace(cfg.induction, n_top=sm.n_top, n_random=sm.n_random,
                                                      half=sm.half), seed=s, step="induction-model-heads")
    if cfg.protocol.enabled:
        induction_protocol.run(ctx, small, dataclasses.replace(cfg.protocol, k_percent=sm.k_percent, half=sm.half,
                                                               icl=False), seed=s, step="induction-model-protocol")
