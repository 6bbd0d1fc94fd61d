"""The bootstrap: resample units (or clusters, or within strata), evaluate a batched statistic, form the
percentile or BCa interval."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from workbench.stats._base import (
    _NORMAL,
    MIN_BOOTSTRAP_UNITS,
    StatsError,
    _check_confidence,
    _check_min_n,
    _check_positive_int,
    _check_same_length,
    _chunks,
    _rngs,
)
from workbench.stats.estimate import Estimate

__all__ = ["bootstrap"]

BatchStat = Callable[[np.ndarray], np.ndarray]  # (b, n_units) int unit indices -> (b,) values


def _unit_index_chunk(
    rng: np.random.Generator, n_units: int, rows: int, strata_members: list[np.ndarray] | None
) -> np.ndarray:
    if strata_members is None:
        # Same draw as scipy.stats.bootstrap: rng.integers(0, n, (n_resamples, n)).
        return rng.integers(0, n_units, (rows, n_units))
    cols = [m[rng.integers(0, m.size, (rows, m.size))] for m in strata_members]
    return np.concatenate(cols, axis=1)


def _leave_one_out(n_units: int, start: int, stop: int) -> np.ndarray:
    base = np.arange(n_units - 1)
    i = np.arange(start, stop)[:, None]
    return base[None, :] + (base[None, :] >= i)


def _resample(
    batch_stat: BatchStat,
    point: float,
    n_units: int,
    *,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
    method: str,
    strata_members: list[np.ndarray] | None = None,
    max_degenerate: float = 0.05,
    degenerate_hint: str = "",
) -> tuple[float, float, float, tuple[str, ...]]:
    """Bootstrap interval (percentile or BCa) of a statistic given as a batched function."""
    if method not in ("percentile", "bca"):
        raise StatsError(f"method must be 'percentile' or 'bca'; got {method!r}.")
    n_resamples = _check_positive_int(n_resamples, "n_resamples", 10)
    boot = np.empty(n_resamples)
    for s, e in _chunks(n_resamples, n_units):
        idx = _unit_index_chunk(rng, n_units, e - s, strata_members)
        boot[s:e] = batch_stat(idx)
    notes: list[str] = []
    bad = ~np.isfinite(boot)
    if bad.any():
        k = int(bad.sum())
        if k > max_degenerate * n_resamples:
            raise StatsError(
                f"{k} of {n_resamples} bootstrap resamples gave an undefined statistic "
                f"(more than max_degenerate={max_degenerate:.0%}){degenerate_hint}. With "
                f"n={n_units} units the resamples are too often degenerate; collect more units."
            )
        notes.append(
            f"{k} of {n_resamples} bootstrap resamples were degenerate (statistic undefined"
            f"{degenerate_hint}) and were dropped."
        )
        boot = boot[~bad]
    alpha = (1.0 - confidence) / 2.0
    if method == "percentile":
        qs = (alpha, 1.0 - alpha)
    else:
        qs = _bca_quantiles(batch_stat, point, boot, n_units, alpha)
    lo, hi = np.quantile(boot, qs)
    se = float(np.std(boot, ddof=1)) if boot.size > 1 else 0.0
    return float(lo), float(hi), se, tuple(notes)


def _bca_quantiles(
    batch_stat: BatchStat, point: float, boot: np.ndarray, n_units: int, alpha: float
) -> tuple[float, float]:
    """Efron (1987) BCa-adjusted quantile levels; z0 and jackknife acceleration as in scipy."""
    if n_units < 3:
        raise StatsError(f"BCa needs at least 3 units for the jackknife; got {n_units}. Use method='percentile'.")
    frac = (np.count_nonzero(boot < point) + np.count_nonzero(boot <= point)) / (2.0 * boot.size)
    if frac <= 0.0 or frac >= 1.0:
        raise StatsError(
            f"BCa interval undefined: the point estimate {point:.6g} lies outside the whole "
            f"bootstrap distribution (bias correction is infinite). Use method='percentile'."
        )
    z0 = _NORMAL.inv_cdf(frac)
    jack = np.empty(n_units)
    for s, e in _chunks(n_units, n_units):
        jack[s:e] = batch_stat(_leave_one_out(n_units, s, e))
    if not np.all(np.isfinite(jack)):
        raise StatsError(
            "BCa needs the statistic on every leave-one-out sample, but some were undefined "
            "(e.g. a constant input once a unit is removed). Use method='percentile'."
        )
    u = (n_units - 1) * (jack.mean() - jack)
    den = float(np.sum(u**2))
    a = float(np.sum(u**3)) / (6.0 * den**1.5) if den > 0 else 0.0
    levels = []
    for z_a in (_NORMAL.inv_cdf(alpha), _NORMAL.inv_cdf(1.0 - alpha)):
        num = z0 + z_a
        denom = 1.0 - a * num
        if denom <= 0:
            raise StatsError("BCa interval undefined (acceleration too large). Use method='percentile'.")
        levels.append(_NORMAL.cdf(z0 + num / denom))
    return levels[0], levels[1]


def _members_of(groups: Any, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Cluster members (item indices, order of first appearance) and the cluster id per item."""
    g = np.asarray(groups, dtype=object) if not isinstance(groups, np.ndarray) else groups
    if g.ndim != 1 or len(g) != n:
        raise StatsError(f"groups must give one cluster id per item; got {len(g)} ids for {n} items.")
    ids: dict[Any, int] = {}
    code = np.empty(n, dtype=np.int64)
    for i, v in enumerate(g.tolist()):
        if isinstance(v, float) and math.isnan(v):
            raise StatsError(f"groups has a NaN cluster id at index {i}.")
        code[i] = ids.setdefault(v, len(ids))
    order = np.argsort(code, kind="stable")
    counts = np.bincount(code, minlength=len(ids))
    members = np.split(order, np.cumsum(counts)[:-1])
    return members, code


def _strata_members(strata: Any, n_units: int, unit_of_item: np.ndarray | None) -> list[np.ndarray]:
    s = np.asarray(strata, dtype=object)
    if unit_of_item is None:
        if len(s) != n_units:
            raise StatsError(f"strata must give one stratum per item; got {len(s)} for {n_units} items.")
        per_unit = s
    else:
        if len(s) != len(unit_of_item):
            raise StatsError(f"strata must give one stratum per item; got {len(s)} for {len(unit_of_item)} items.")
        per_unit = np.empty(n_units, dtype=object)
        for item, u in enumerate(unit_of_item):
            if per_unit[u] is not None and per_unit[u] != s[item]:
                raise StatsError(f"strata must be constant within a cluster; cluster {u} has several strata.")
            per_unit[u] = s[item]
    out: dict[Any, list[int]] = {}
    for u, v in enumerate(per_unit.tolist()):
        out.setdefault(v, []).append(u)
    return [np.asarray(m) for m in out.values()]


_VECTORIZABLE = (np.mean, np.median, np.sum, np.std, np.var, np.min, np.max, np.nanmean)


def _scalar(v: Any, where: str) -> float:
    a = np.asarray(v)
    if a.size != 1:
        raise StatsError(f"statistic must return a scalar; got shape {a.shape} {where}.")
    try:
        return float(a.reshape(()))
    except (TypeError, ValueError):
        raise StatsError(f"statistic must return a number; got {v!r} {where}.") from None


def bootstrap(
    data: Any,
    statistic: Callable[..., Any] = np.mean,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
    method: str = "percentile",
    groups: Sequence[Any] | None = None,
    strata: Sequence[Any] | None = None,
    vectorized: bool | None = None,
    max_degenerate: float = 0.05,
) -> Estimate:
    """Bootstrap confidence interval of ``statistic`` over units.

    Args:
        data: one array whose first axis indexes units (prompts, personas, layers...), or a
            **tuple** of such arrays of equal length for a paired statistic: the same unit
            indices are resampled in every array, so pairs stay together.
        statistic: ``statistic(*arrays) -> float``. Computed on the full data for the point
            value, and on each resample.
        n_resamples: number of bootstrap resamples (>= 10; 2000 is fine for 95% intervals,
            use 10000 for 99% or for BCa tails).
        confidence: interval coverage.
        seed: seed of ``numpy.random.default_rng``; ``None`` draws one and records it.
        method: ``"percentile"`` or ``"bca"`` (bias-corrected and accelerated, Efron 1987;
            acceleration from the leave-one-unit-out jackknife). With no groups/strata and
            the same seed, both equal ``scipy.stats.bootstrap`` (same resamples).
        groups: a cluster id per item. Clusters are resampled with replacement and all their
            items come along: **the bootstrap is over prompts, not generations**, which is
            what you want when a prompt has several sampled generations (they are correlated).
            ``n`` in the result is then the number of clusters.
        strata: a stratum per item (constant within a cluster); each stratum is resampled
            separately, keeping its size (e.g. classes for AUROC).
        vectorized: whether ``statistic`` accepts ``axis=-1`` on a (resamples, n) array. By
            default True for numpy's mean/median/sum/std/var/min/max on one 1-D array.
        max_degenerate: fraction of resamples allowed to give a non-finite statistic (they
            are dropped and reported in ``notes``); above it a StatsError is raised.

    Returns:
        :class:`Estimate` with the percentile/BCa interval and the bootstrap standard
        deviation as ``stderr``.
    """
    confidence = _check_confidence(confidence)
    arrays = tuple(np.asarray(a) for a in data) if isinstance(data, tuple) else (np.asarray(data),)
    if not arrays:
        raise StatsError("bootstrap got an empty tuple of arrays.")
    for k, a in enumerate(arrays):
        if a.ndim == 0:
            raise StatsError(f"bootstrap data[{k}] is a scalar; pass one value per unit.")
        if a.dtype.kind == "f" and np.isnan(a).any():
            raise StatsError(
                f"bootstrap data[{k}] has {int(np.isnan(a).sum())} NaN value(s); drop or impute "
                f"those units first."
            )
    n = _check_same_length(**{f"data[{k}]": a for k, a in enumerate(arrays)})
    boot_rng, _, seed = _rngs(seed)

    point = _scalar(statistic(*arrays), "on the full data")
    if not math.isfinite(point):
        raise StatsError(f"statistic is {point} on the full data; a bootstrap interval is undefined.")

    if vectorized is None:
        vectorized = statistic in _VECTORIZABLE and len(arrays) == 1 and arrays[0].ndim == 1

    def on_items(item_idx_rows: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        if vectorized and isinstance(item_idx_rows, np.ndarray):
            out = np.asarray(statistic(*(a[item_idx_rows] for a in arrays), axis=-1), dtype=float)
            return out.reshape(-1)
        return np.array(
            [_scalar(statistic(*(a[row] for a in arrays)), "on a resample") for row in item_idx_rows]
        )

    notes: list[str] = []
    if groups is None:
        n_units, unit_of_item = n, None
        batch_stat: BatchStat = on_items
        kind = ""
    else:
        members, unit_of_item = _members_of(groups, n)
        n_units = len(members)
        sizes = {m.size for m in members}
        if len(sizes) == 1:
            mat = np.stack(members)

            def batch_stat(u: np.ndarray) -> np.ndarray:
                return on_items(mat[u].reshape(u.shape[0], -1))

        else:

            def batch_stat(u: np.ndarray) -> np.ndarray:
                return on_items([np.concatenate([members[j] for j in row]) for row in u])

        kind = "cluster "
        notes.append(f"cluster bootstrap over {n_units} clusters ({n} items)")
    _check_min_n(n_units, MIN_BOOTSTRAP_UNITS, "a bootstrap interval", "clusters" if groups is not None else "units")
    strata_members = None
    if strata is not None:
        strata_members = _strata_members(strata, n_units, unit_of_item)
        kind = "stratified " + kind
    lo, hi, se, more = _resample(
        batch_stat,
        point,
        n_units,
        n_resamples=n_resamples,
        confidence=confidence,
        rng=boot_rng,
        method=method,
        strata_members=strata_members,
        max_degenerate=max_degenerate,
    )
    return Estimate(
        point,
        lo,
        hi,
        confidence=confidence,
        stderr=se,
        n=n_units,
        method=f"{kind}bootstrap {'BCa' if method == 'bca' else 'percentile'}",
        seed=seed,
        statistic=getattr(statistic, "__name__", "statistic"),
        notes=tuple(notes) + more,
    )
