"""circuits: where in the model does this happen?

Logit lens and tuned lens, activation patching (batched, exact fast path), attribution patching,
head detectors, ablations and the induction protocol, on :class:`workbench.models.HookedModel`.
Every method returns a typed result with ``to_dataframe()`` and ``provenance``; ``circuits.plots``
has one figure function per result. See ``circuits/AGENTS.md`` for the file map.
"""

from __future__ import annotations

from .ablation import (
                       ICLScore,
                       InductionProtocolResult,
                       copy_task,
                       head_ablation,
                       icl_score,
                       induction_protocol,
                       repeated_half_loss,
                       rounding_rule,
                       top_heads_per_layer,
)
from .alignment import AlignmentError, SpanAlignment, align_tokens, check_aligned_pair
from .answer_lens import AnswerLensResult, answer_lens, plot_answer_lens
from .attribution import AgreementReport, AttributionResult, attribution_agreement, attribution_patching
from .corruption import CorruptionError, NoiseCorruption, check_pair, embedding_noise, token_replacement
from .heads import (
                       CopyingScores,
                       HeadScores,
                       copying_scores,
                       detection_pattern,
                       head_scores,
                       pattern_scores,
                       repeated_random_tokens,
)
from .induction_model import induction_model_dir, induction_model_info, load_induction_model
from .lens import (
                       DLAResult,
                       FoldedUnembed,
                       LensResult,
                       at_last_token,
                       direct_logit_attribution,
                       fold_unembed,
                       lens_from_residuals,
                       logit_lens,
                       resolution_stages,
)
from .metrics import KLFromClean, LogitDiff, PatchMetric, TargetLogProb, TargetProb, single_token_ids
from .pairs import COMPONENT_FAMILIES, PairPatchingResult, pair_patching, plot_pair_patching
from .patching import PATCH_KINDS, DirectPathResult, PatchingError, PatchingResult, patching_sweep, path_patching
from .prompts import FACTS, FACTUAL_PAIRS, IOI_PAIRS, factual_recall_batch, ioi_batch, single_token_facts, usable_pairs
from .tuned_lens import LensComparison, TunedLens, TunedLensTraining, compare_lenses, train_tuned_lens

__all__ = [
    "logit_lens", "lens_from_residuals", "LensResult", "fold_unembed", "FoldedUnembed", "direct_logit_attribution",
    "DLAResult", "at_last_token", "resolution_stages", "TunedLens", "train_tuned_lens", "TunedLensTraining", "compare_lenses", "LensComparison",
    "patching_sweep", "PatchingResult", "PATCH_KINDS", "PatchingError", "path_patching", "DirectPathResult",
    "LogitDiff", "TargetProb", "TargetLogProb", "KLFromClean", "PatchMetric", "single_token_ids",
    "answer_lens", "AnswerLensResult", "plot_answer_lens", "pair_patching", "PairPatchingResult", "plot_pair_patching",
    "COMPONENT_FAMILIES",
    "check_pair", "token_replacement", "align_tokens", "check_aligned_pair", "SpanAlignment", "AlignmentError", "embedding_noise", "NoiseCorruption", "CorruptionError",
    "attribution_patching", "AttributionResult", "attribution_agreement", "AgreementReport",
    "head_scores", "HeadScores", "repeated_random_tokens", "detection_pattern", "pattern_scores", "copying_scores",
    "CopyingScores", "head_ablation", "icl_score", "ICLScore", "repeated_half_loss", "induction_protocol",
    "InductionProtocolResult", "rounding_rule", "top_heads_per_layer", "copy_task",
    "induction_model_dir", "load_induction_model", "induction_model_info",
    "FACTS", "FACTUAL_PAIRS", "IOI_PAIRS", "factual_recall_batch", "ioi_batch", "single_token_facts", "usable_pairs",
]
