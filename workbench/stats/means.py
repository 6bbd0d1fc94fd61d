"""Means with a confidence interval: the one implementation every package uses.

:func:`mean_estimate` is the mean of per-unit values (prompts, items, tokens grouped by prompt) with either

- ``ci="bootstrap"`` (default): a percentile bootstrap over units, or a cluster bootstrap over ``groups``
  (resample prompts, not their tokens or generations; Davison & Hinkley 1997, sec. 3.8); or
- ``ci="normal"``: the normal interval mean +- z SE, where SE is the plain standard error, or, when ``groups``
  cluster, the cluster-robust (ratio-estimator) standard error over cluster totals:
  ``var = G / (G - 1) * sum_g (T_g - mean * n_g)^2 / n^2`` (``T_g`` the total and ``n_g`` the size of cluster g).
  Microseconds per number, for grids of hundreds of estimates.

:func:`paired_difference` is the mean of per-unit differences ``a - b`` (a shift, a selectivity, an effect between
two conditions on the same items) through :func:`mean_estimate`.

:func:`normal_estimate` turns a value and its variance into an :class:`Estimate` (interval clipped to
``bounds``, optional two-sided z-test p-value against ``null``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from workbench.stats._base import _NORMAL, StatsError, _check_confidence, _float_1d, _z
from workbench.stats.estimate import Estimate
from workbench.stats.resampling import _members_of, bootstrap

__all__ = ["mean_estimate", "normal_estimate", "paired_difference"]


def normal_estimate(value: float, variance: float, *, n: int, confidence: float = 0.95, method: str = "normal",
                    statistic: str = "", null: float | None = None,
                    bounds: tuple[float, float] = (-math.inf, math.inf), notes: Sequence[str] = ()) -> Estimate:
    """``value +- z sqrt(variance)`` as an :class:`Estimate`, the interval clipped to ``bounds`` (e.g. ``(0, 1)`` for
    a rate or an AUROC). With ``null``, ``p_value`` is the two-sided z-test of ``value = null`` (None when the
    standard error is 0). A negative variance (rounding) counts as 0."""
    confidence = _check_confidence(confidence)
    se = float(np.sqrt(max(variance, 0.0)))
    z = _z(confidence)
    p = None
    if null is not None and se > 0:
        p = 2.0 * (1.0 - _NORMAL.cdf(abs(value - null) / se))
    lo, hi = bounds
    return Estimate(float(value), max(lo, value - z * se), min(hi, value + z * se), confidence=confidence, stderr=se,
                    n=n, method=method, p_value=p, statistic=statistic, notes=tuple(notes))


def mean_estimate(values: Any, groups: Any = None, *, ci: str = "bootstrap",
                  n_resamples: int = 2000, seed: int | None = 0, confidence: float = 0.95, statistic: str = "mean",
                  bounds: tuple[float, float] = (-math.inf, math.inf), null: float | None = None) -> Estimate:
    """Mean of ``values`` (one per item) with a confidence interval.

    Args:
        values: one finite number per item.
        groups: a cluster id per item (the prompt of each token or generation). ``ci="bootstrap"`` then resamples
            clusters (``n`` is the number of clusters; fewer than 2 clusters is an error); ``ci="normal"`` uses the
            cluster-robust standard error when some cluster has more than one item (at least 2 clusters needed).
        ci: ``"bootstrap"`` (percentile; ``n_resamples``, ``seed``) or ``"normal"`` (analytic, see the module).
        statistic: the name recorded in the estimate.
        bounds: the normal interval is clipped to these (e.g. ``(0, 1)`` for a fraction).
        null: with ``ci="normal"``, the two-sided z-test p-value of ``mean = null``.

    With ``ci="bootstrap"``, a single value or values without spread give the degenerate interval
    ``[mean, mean]`` (method ``"exact (constant or single value)"``, noted): the bootstrap has nothing to
    resample. With ``ci="normal"`` they give the same interval through a zero standard error.
    """
    x = _float_1d(values, "values")
    if x.size == 0:
        raise StatsError("mean_estimate got no values; pass one value per item.")
    if ci == "normal":
        return _normal_mean(x, groups, confidence, statistic, bounds, null)
    if ci != "bootstrap":
        raise StatsError(f"ci must be 'bootstrap' or 'normal'; got {ci!r}.")
    if np.ptp(x) == 0:  # one value, or all equal
        n_units = x.size if groups is None else len(_members_of(np.asarray(groups), x.size)[0])
        m = float(x.mean())
        return Estimate(m, m, m, confidence=confidence, n=n_units, method="exact (constant or single value)",
                        statistic=statistic, notes=("no spread: the interval is degenerate",))
    kw: dict[str, Any] = {} if groups is None else {"groups": np.asarray(groups)}
    est = bootstrap(x, np.mean, n_resamples=n_resamples, confidence=confidence, seed=seed, **kw)
    return dataclasses.replace(est, statistic=statistic)


def _normal_mean(x: np.ndarray, groups: Any, confidence: float, statistic: str, bounds: tuple[float, float],
                 null: float | None) -> Estimate:
    n = x.size
    m = float(x.mean())
    gi = None
    if groups is not None:
        g = np.asarray(groups)
        if g.ndim != 1 or g.size != n:
            raise StatsError(f"groups must give one cluster id per item; got {g.size} ids for {n} items.")
        _, gi = np.unique(g, return_inverse=True)
        G = int(gi.max()) + 1
        if G == n:
            gi = None
        elif G < 2:
            raise StatsError(f"every item is in one cluster (n={n}); a cluster-robust interval needs at least 2 "
                             f"clusters. Pass groups=None to treat the items as independent.")
    if gi is None:
        var = x.var(ddof=1) / n if n > 1 else 0.0
        units, method = n, "normal"
    else:
        G = int(gi.max()) + 1
        tot = np.bincount(gi, weights=x, minlength=G)
        cnt = np.bincount(gi, minlength=G)
        var = G / (G - 1.0) * float(((tot - m * cnt) ** 2).sum()) / n ** 2
        units, method = G, "normal (cluster-robust)"
    return normal_estimate(m, var, n=units, confidence=confidence, method=method, statistic=statistic, null=null,
                           bounds=bounds)


def paired_difference(a: Any, b: Any, groups: Sequence[Any] | None = None, *, ci: str = "bootstrap",
                      n_resamples: int = 2000, seed: int | None = 0, confidence: float = 0.95,
                      statistic: str = "mean_difference") -> Estimate:
    """``mean(a - b)`` over the same units (paired), with a confidence interval from :func:`mean_estimate`
    (``ci="bootstrap"`` over units or clusters, or ``"normal"``, cluster-robust with ``groups``; the normal
    interval carries the z-test p-value of a zero difference).

    A pair where either value is NaN (an item that could not be scored under one condition) is dropped, and the
    estimate's ``notes`` say how many were.
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise StatsError(f"paired_difference needs two 1-D arrays of equal length (one value per unit and "
                         f"condition); got shapes {a.shape} and {b.shape}.")
    keep = ~(np.isnan(a) | np.isnan(b))
    g = None if groups is None else np.asarray(groups)
    if g is not None and g.shape[0] != a.size:
        raise StatsError(f"groups must give one cluster id per pair; got {g.shape[0]} ids for {a.size} pairs.")
    notes: tuple[str, ...] = ()
    if not keep.all():
        notes = (f"{int((~keep).sum())} of {a.size} pairs had a NaN value and were dropped",)
        a, b = a[keep], b[keep]
        g = None if g is None else g[keep]
    est = mean_estimate(a - b, g, ci=ci, n_resamples=n_resamples, seed=seed, confidence=confidence,
                        statistic=statistic, null=0.0)
    return dataclasses.replace(est, notes=est.notes + notes) if notes else est
