"""``induction-signatures``: induction heads found by their attention pattern and confirmed by ablation.

On the configured model: every head's induction and previous-token scores, single-head ablations
of the top and of random heads against copying (cross-checked), and the targeted vs matched
random protocol with the ICL score. Then the same on the project's 2-layer attention-only model,
whose planted previous-token and induction heads are the ground truth (skipped with a note where
the model is not shipped in this checkout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ModelSection
from ..registry import experiment
from ..run import RunContext, Section
from . import studies


@dataclass
class InductionSignaturesConfig:
    model: ModelSection = field(default_factory=ModelSection)
    seed: int = 0
    n_top: int = 15
    n_random: int = 15
    n_seqs: int = 10
    n_copy: int = 20
    k_percent: float = 2.0
    n_random_sets: int = 10
    protocol_seqs: int = 20
    icl: bool = True
    shipped_model: bool = True


@experiment("induction-signatures", InductionSignaturesConfig,
            "induction heads: detector scores vs single-head and targeted-vs-random ablations, ICL score; the "
            "shipped 2-layer model as ground truth")
def run(ctx: RunContext, cfg: InductionSignaturesConfig) -> None:
    m = ctx.model()
    s = cfg.seed
    studies.induction_study(ctx, m, n_top=cfg.n_top, n_random=cfg.n_random, n_seqs=cfg.n_seqs, n_copy=cfg.n_copy,
                            seed=s)
    studies.induction_protocol_study(ctx, m, k_percent=cfg.k_percent, n_random=cfg.n_random_sets,
                                     n_seqs=cfg.protocol_seqs, icl=cfg.icl, seed=s)
    if not cfg.shipped_model:
        return
    from circuits import induction_model_dir

    try:
        d = induction_model_dir()
    except FileNotFoundError as e:
        msg = str(e)
        ctx.step("induction-model", lambda w: (w.section(Section(
            "Shipped induction model", "Skipped: the project's 2-layer induction model is not in this checkout.",
            notes=[msg])), {})[1])
        return
    small = ctx.model(str(d))  # trained on 64-token sequences: repeated halves of 25 tokens (1 + 2 x 25 <= 64)
    studies.induction_study(ctx, small, n_top=2, n_random=min(6, small.n_layers * small.facts.n_heads - 2),
                            n_seqs=cfg.n_seqs, half=25, n_copy=cfg.n_copy, seed=s, step="induction-model-heads")
    studies.induction_protocol_study(ctx, small, k_percent=25.0, n_random=cfg.n_random_sets,
                                     n_seqs=cfg.protocol_seqs, half=25, icl=False, seed=s,
                                     step="induction-model-protocol")
