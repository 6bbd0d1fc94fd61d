"""circuits: where in the model does this happen?

Logit lens and tuned lens, activation patching (batched, exact fast path), attribution patching,
head detectors, ablations and the induction protocol, on :class:`workbench.models.HookedModel`.
See ``circuits/AGENTS.md`` for the file map.
"""

from __future__ import annotations

from .corruption import CorruptionError, NoiseCorruption, check_pair, embedding_noise, token_replacement
from .metrics import KLFromClean, LogitDiff, PatchMetric, TargetLogProb, TargetProb, single_token_ids
from .patching import PATCH_KINDS, DirectPathResult, PatchingError, PatchingResult, path_patching, patching_sweep
