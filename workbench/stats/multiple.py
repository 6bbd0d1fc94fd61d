"""Multiple comparisons: Holm (FWER) and Benjamini-Hochberg (FDR) adjusted p-values."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from workbench.stats._base import StatsError, _check_min_n, _float_1d

__all__ = ["AdjustedPValues", "holm", "benjamini_hochberg", "adjust_pvalues"]


class AdjustedPValues(NamedTuple):
    """Adjusted p-values (input order) and which hypotheses are rejected at ``alpha``."""

    p_adjusted: np.ndarray
    reject: np.ndarray


def _pvalues(p: Any) -> np.ndarray:
    a = _float_1d(p, "pvalues")
    _check_min_n(a.size, 1, "a multiple-testing adjustment", "p-values")
    if np.any((a < 0) | (a > 1)):
        raise StatsError(f"p-values must lie in [0, 1]; got min {a.min()}, max {a.max()}.")
    return a


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> AdjustedPValues:
    """Holm (1979) step-down adjustment (family-wise error rate).

    With p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); reject where
    adj <= alpha. Same as statsmodels ``multipletests(method="holm")``.
    """
    p = _pvalues(pvalues)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adj = np.empty(m)
    adj[order] = adj_sorted
    return AdjustedPValues(adj, adj <= alpha)


def benjamini_hochberg(pvalues: Sequence[float], alpha: float = 0.05) -> AdjustedPValues:
    """Benjamini-Hochberg (1995) step-up adjustment (false discovery rate).

    With p_(1) <= ... <= p_(m): adj_(i) = min_{j >= i} min(1, m p_(j) / j); reject where
    adj <= alpha. Same as statsmodels ``multipletests(method="fdr_bh")``.
    """
    p = _pvalues(pvalues)
    m = p.size
    order = np.argsort(p, kind="stable")
    raw = m * p[order] / np.arange(1, m + 1)
    adj_sorted = np.minimum(1.0, np.minimum.accumulate(raw[::-1])[::-1])
    adj = np.empty(m)
    adj[order] = adj_sorted
    return AdjustedPValues(adj, adj <= alpha)


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm", alpha: float = 0.05) -> AdjustedPValues:
    """``method="holm"`` (FWER) or ``"bh"`` (FDR); see :func:`holm`, :func:`benjamini_hochberg`."""
    if method == "holm":
        return holm(pvalues, alpha)
    if method in ("bh", "fdr_bh", "benjamini_hochberg"):
        return benjamini_hochberg(pvalues, alpha)
    raise StatsError(f"method must be 'holm' or 'bh'; got {method!r}.")
