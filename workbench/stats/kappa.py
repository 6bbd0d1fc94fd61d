"""Agreement between two raters: Cohen's kappa (unweighted, linear, quadratic) with a bootstrap CI."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from workbench.stats._base import StatsError, _check_confidence, _check_min_n, _check_same_length, _rngs
from workbench.stats.estimate import Estimate
from workbench.stats.resampling import _resample

__all__ = ["cohens_kappa"]


def _kappa_from_counts(counts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted kappa 1 - sum(w O) / sum(w E) per row of (b, k, k) confusion counts."""
    tot = counts.sum(axis=(1, 2))
    expected = counts.sum(axis=2)[:, :, None] * counts.sum(axis=1)[:, None, :] / tot[:, None, None]
    num = np.einsum("bij,ij->b", counts, w)
    den = np.einsum("bij,ij->b", expected, w)
    out = np.full(counts.shape[0], np.nan)
    ok = den > 1e-12 * tot
    out[ok] = 1.0 - num[ok] / den[ok]
    return out


def cohens_kappa(
    a: Any,
    b: Any,
    *,
    labels: Sequence[Any] | None = None,
    weights: str | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
    max_degenerate: float = 0.05,
) -> Estimate:
    """Cohen's (1960) kappa between two raters over the same units, with a bootstrap CI.

    kappa = (p_observed - p_chance) / (1 - p_chance); ``weights="linear"|"quadratic"`` gives
    weighted kappa for ordinal labels (category order = ``labels`` or sorted unique values).
    Equal to ``sklearn.metrics.cohen_kappa_score``. Raises StatsError when chance agreement is
    1 (both raters gave every unit the same single label), where kappa is undefined.
    """
    confidence = _check_confidence(confidence)
    aa, bb = np.asarray(a), np.asarray(b)
    if aa.ndim != 1 or bb.ndim != 1:
        raise StatsError("cohens_kappa takes two 1-D sequences of labels, one per unit.")
    n = _check_same_length(a=aa, b=bb)
    _check_min_n(n, 2, "Cohen's kappa")
    for name, arr in (("a", aa), ("b", bb)):
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise StatsError(f"{name} has NaN labels; drop those units first.")
    cats = list(labels) if labels is not None else np.unique(np.concatenate([aa, bb])).tolist()
    index = {c: i for i, c in enumerate(cats)}
    try:
        ca = np.array([index[v] for v in aa.tolist()])
        cb = np.array([index[v] for v in bb.tolist()])
    except KeyError as e:
        raise StatsError(f"label {e.args[0]!r} is not in labels={cats!r}.") from None
    k = len(cats)
    ii, jj = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    if weights is None:
        w = (ii != jj).astype(float)
    elif weights == "linear":
        w = np.abs(ii - jj).astype(float)
    elif weights == "quadratic":
        w = ((ii - jj) ** 2).astype(float)
    else:
        raise StatsError(f"weights must be None, 'linear' or 'quadratic'; got {weights!r}.")
    code = ca * k + cb

    def batch(idx: np.ndarray) -> np.ndarray:
        rows = idx.shape[0]
        flat = (np.arange(rows)[:, None] * k * k + code[idx]).ravel()
        counts = np.bincount(flat, minlength=rows * k * k).reshape(rows, k, k).astype(float)
        return _kappa_from_counts(counts, w)

    kappa = float(batch(np.arange(n)[None])[0])
    if not math.isfinite(kappa):
        only = sorted(set(aa.tolist()) | set(bb.tolist()), key=str)
        raise StatsError(
            f"Cohen's kappa is undefined: chance agreement is 1 because both raters gave every "
            f"unit the same label ({only!r}, n={n}). Report raw agreement instead, or add units "
            f"where the raters can differ."
        )
    boot_rng, _, seed = _rngs(seed)
    lo, hi, se, notes = _resample(
        batch, kappa, n, n_resamples=n_resamples, confidence=confidence, rng=boot_rng,
        method="percentile", max_degenerate=max_degenerate,
        degenerate_hint=": a single label in the resample",
    )
    return Estimate(
        kappa, lo, hi, confidence=confidence, stderr=se, n=n, method="bootstrap percentile",
        seed=seed, statistic="cohens_kappa" if weights is None else f"cohens_kappa_{weights}",
        notes=notes,
    )
