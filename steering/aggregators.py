"""Aggregators: how a set of activations becomes one steering direction.

An aggregator maps positive and negative activations (``[n, d]`` each) to a vector ``[d]``:

- :func:`mean_difference`: ``mean(pos) - mean(neg)``: contrastive activation addition
  (Rimsky et al. 2024, CAA), ActAdd's difference (Turner et al. 2023) averaged over prompts,
  persona vectors (Chen et al. 2025) and the refusal direction's difference in means
  (Arditi et al. 2024). The two sets need not be paired.
- :func:`pca_difference`: the first principal component of the *paired* differences
  ``pos_i - neg_i`` (as in representation-engineering readers), signed to agree with the mean
  difference and scaled to the mean difference's norm, so a multiplier means the same for both
  aggregators.

:data:`AGGREGATORS` names them for the builders (``aggregator="mean_diff" | "pca"``); a callable
``f(pos, neg) -> [d]`` works too.
"""

from __future__ import annotations

from typing import Callable

import torch

from workbench.errors import WorkbenchError

__all__ = ["mean_difference", "pca_difference", "AGGREGATORS", "get_aggregator", "AggregatorError"]


class AggregatorError(WorkbenchError, ValueError):
    pass


def _check(pos: torch.Tensor, neg: torch.Tensor, paired: bool) -> tuple[torch.Tensor, torch.Tensor]:
    pos, neg = torch.as_tensor(pos).double(), torch.as_tensor(neg).double()
    if pos.ndim != 2 or neg.ndim != 2:
        raise AggregatorError(f"activations must be [n, d]; got {tuple(pos.shape)} and {tuple(neg.shape)}")
    if pos.shape[1] != neg.shape[1]:
        raise AggregatorError(f"positive and negative activations differ in width: {pos.shape[1]} vs {neg.shape[1]}")
    if len(pos) == 0 or len(neg) == 0:
        raise AggregatorError("need at least one positive and one negative activation")
    if paired and pos.shape[0] != neg.shape[0]:
        raise AggregatorError(
            f"this aggregator needs paired activations (pos[i] pairs with neg[i]); got {len(pos)} positive "
            f"and {len(neg)} negative"
        )
    return pos, neg


def mean_difference(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``mean(pos) - mean(neg)`` (float32). Paired or not: for pairs it equals the mean of the differences."""
    pos, neg = _check(pos, neg, paired=False)
    return (pos.mean(0) - neg.mean(0)).float()


def pca_difference(pos: torch.Tensor, neg: torch.Tensor, *, center: bool = True) -> torch.Tensor:
    """First principal component of the paired differences ``pos_i - neg_i``.

    The unit component is signed so that it has a non-negative dot product with the mean
    difference, then scaled to the mean difference's norm. ``center=False`` takes the top
    singular vector of the uncentred differences (which leans towards the mean difference).
    """
    pos, neg = _check(pos, neg, paired=True)
    diffs = pos - neg
    if center and len(diffs) < 2:
        raise AggregatorError("PCA of centred differences needs at least 2 pairs")
    mean = diffs.mean(0)
    x = diffs - mean if center else diffs
    if float(x.abs().max()) == 0.0:
        raise AggregatorError("all paired differences are identical: PCA is undefined (use mean_diff)")
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    u = vh[0]
    if float(u @ mean) < 0:
        u = -u
    return (u * mean.norm()).float()


AGGREGATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean_diff": mean_difference,
    "pca": pca_difference,
}


def get_aggregator(spec: str | Callable) -> tuple[str, Callable]:
    """``(name, function)`` for a name in :data:`AGGREGATORS` or a callable."""
    if callable(spec):
        return getattr(spec, "__name__", "custom"), spec
    if spec not in AGGREGATORS:
        raise AggregatorError(f"unknown aggregator {spec!r}; use one of {sorted(AGGREGATORS)} or a callable f(pos, neg)")
    return spec, AGGREGATORS[spec]
