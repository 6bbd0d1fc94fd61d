"""Rank correlations (Spearman, Kendall tau-b) with paired bootstrap CIs and permutation p-values."""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import numpy as np

from workbench.stats._base import (
    _CHUNK_ELEMENTS,
    MIN_CORRELATION_UNITS,
    _check_confidence,
    _check_min_n,
    _check_not_constant,
    _check_positive_int,
    _check_same_length,
    _chunks,
    _float_1d,
    _pearson_rows,
    _rankdata,
    _rngs,
)
from workbench.stats.estimate import Estimate
from workbench.stats.resampling import _resample

__all__ = ["spearman", "kendall_tau_b"]


def _paired_rank_inputs(x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    xa = _float_1d(x, "x", allow_inf=True)
    ya = _float_1d(y, "y", allow_inf=True)
    n = _check_same_length(x=xa, y=ya)
    _check_min_n(n, MIN_CORRELATION_UNITS, what, "pairs")
    _check_not_constant(xa, "x", what)
    _check_not_constant(ya, "y", what)
    return xa, ya


def _permutation_p(
    perm_stat: Callable[[np.ndarray], np.ndarray],
    observed: float,
    n: int,
    n_permutations: int,
    rng: np.random.Generator,
) -> tuple[float, str]:
    """Two-sided permutation p-value of ``observed`` (|stat| >= |observed|).

    Exact (all n! permutations, p = k / n!) when n! <= n_permutations; otherwise Monte Carlo
    with the add-one correction p = (k + 1) / (n_permutations + 1) (Phipson & Smyth 2010).
    """
    n_permutations = _check_positive_int(n_permutations, "n_permutations", 1)
    thr = abs(observed) - 1e-12 * max(1.0, abs(observed))
    if math.factorial(n) <= n_permutations:
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
        k = 0
        for s, e in _chunks(len(perms), n):
            k += int(np.count_nonzero(np.abs(perm_stat(perms[s:e])) >= thr))
        return k / len(perms), f"exact permutation p ({len(perms)} permutations)"
    k = 0
    base = np.arange(n)
    for s, e in _chunks(n_permutations, n):
        perms = rng.permuted(np.broadcast_to(base, (e - s, n)), axis=1)
        k += int(np.count_nonzero(np.abs(perm_stat(perms)) >= thr))
    return (k + 1) / (n_permutations + 1), f"permutation p ({n_permutations} permutations, add-one)"


def spearman(
    x: Any,
    y: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    n_permutations: int = 10000,
    seed: int | None = 0,
    ci_method: str = "percentile",
    max_degenerate: float = 0.05,
) -> Estimate:
    """Spearman's rho with a paired bootstrap CI and a two-sided permutation p-value.

    The point value is the Pearson correlation of average ranks: equal to
    ``scipy.stats.spearmanr`` including ties. The CI resamples pairs (units) with
    replacement; resamples where x or y is constant (rho undefined) are dropped and counted in
    ``notes`` (error above ``max_degenerate``). The p-value permutes y against x
    (exact when n! <= n_permutations, else (k+1)/(n_permutations+1)).

    Raises StatsError for fewer than 3 pairs, mismatched lengths, NaN, or a constant input
    (naming which).
    """
    confidence = _check_confidence(confidence)
    xa, ya = _paired_rank_inputs(x, y, "Spearman's rho")
    n = xa.size
    boot_rng, perm_rng, seed = _rngs(seed)
    rx, ry = _rankdata(xa), _rankdata(ya)
    rho = float(_pearson_rows(rx[None], ry[None])[0])

    def batch(idx: np.ndarray) -> np.ndarray:
        return _pearson_rows(_rankdata(xa[idx]), _rankdata(ya[idx]))

    lo, hi, se, notes = _resample(
        batch, rho, n, n_resamples=n_resamples, confidence=confidence, rng=boot_rng,
        method=ci_method, max_degenerate=max_degenerate, degenerate_hint=": x or y constant in the resample",
    )
    cx, cy = rx - rx.mean(), ry - ry.mean()
    scale = math.sqrt(float(cx @ cx) * float(cy @ cy))

    def perm(p: np.ndarray) -> np.ndarray:
        return (cy[p] @ cx) / scale

    p, p_note = _permutation_p(perm, rho, n, n_permutations, perm_rng)
    return Estimate(
        rho, lo, hi, confidence=confidence, stderr=se, n=n,
        method=f"bootstrap {'BCa' if ci_method == 'bca' else 'percentile'}", seed=seed, p_value=p,
        statistic="spearman_rho", notes=notes + (p_note,),
    )


def _sign_block(v: np.ndarray, cols: slice) -> np.ndarray:
    return np.sign(v[:, None] - v[None, cols])


def _kendall_weighted(xa: np.ndarray, ya: np.ndarray, w: np.ndarray) -> np.ndarray:
    """tau-b of resamples given as unit multiplicities ``w`` (b, n).

    With Sx = sign(x_i - x_j), Sy likewise, a resample with multiplicities w has
    S = 1/2 w' (Sx*Sy) w, untied-in-x pairs 1/2 w' |Sx| w, untied-in-y 1/2 w' |Sy| w (copies of
    one unit are tied in both and drop out, as they must), so tau-b = w'Mw / sqrt(w'|Sx|w w'|Sy|w).
    """
    n = xa.size
    num = np.zeros(w.shape[0])
    dx = np.zeros(w.shape[0])
    dy = np.zeros(w.shape[0])
    step = max(1, _CHUNK_ELEMENTS // (4 * n))
    for c0 in range(0, n, step):
        cols = slice(c0, min(c0 + step, n))
        sx = _sign_block(xa, cols)
        sy = _sign_block(ya, cols)
        wc = w[:, cols]
        num += np.einsum("bj,bj->b", w @ (sx * sy), wc)
        dx += np.einsum("bj,bj->b", w @ np.abs(sx), wc)
        dy += np.einsum("bj,bj->b", w @ np.abs(sy), wc)
    out = np.full(w.shape[0], np.nan)
    ok = (dx > 0) & (dy > 0)
    out[ok] = num[ok] / np.sqrt(dx[ok] * dy[ok])
    return np.clip(out, -1.0, 1.0)


def _untied_pairs(v: np.ndarray) -> float:
    """n(n-1)/2 minus the pairs tied in ``v``."""
    counts = np.unique(v, return_counts=True)[1].astype(float)
    return v.size * (v.size - 1) / 2.0 - float(np.sum(counts * (counts - 1) / 2.0))


def _kendall_s_permuted(xr: np.ndarray, yr: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """S = sum_{i<j} sign(x_j - x_i) sign(y_p(j) - y_p(i)) for each permutation row ``p``.

    Knight-style sweep in x order with a Fenwick tree over the y ranks, vectorised across
    permutations: O(B n log n) instead of O(B n^2). Pairs tied in x (same block) are never
    compared; pairs tied in y count 0.
    """
    order = np.argsort(xr, kind="stable")
    xs = xr[order]
    ydense = np.unique(yr, return_inverse=True)[1].astype(np.int64) + 1  # 1..m
    levels = int(ydense.max()).bit_length()
    size = 1 << levels
    dump = size + 1  # updates that run past the tree land here
    out = np.empty(perms.shape[0])
    block_end = np.flatnonzero(np.r_[xs[1:] != xs[:-1], True])  # last index of each x block
    step = max(1, (8 * _CHUNK_ELEMENTS) // (size + 2))
    for r0 in range(0, perms.shape[0], step):
        yv_all = ydense[perms[r0 : r0 + step][:, order]]
        b = yv_all.shape[0]
        rows = np.arange(b)
        tree = np.zeros((b, size + 2), dtype=np.int64)
        s_tot = np.zeros(b, dtype=np.int64)
        inserted = 0
        start = 0
        for end in block_end:
            for c in range(start, int(end) + 1):  # query the whole x block before inserting it
                i1 = yv_all[:, c] - 1
                i2 = yv_all[:, c].copy()
                less = np.zeros(b, dtype=np.int64)
                leq = np.zeros(b, dtype=np.int64)
                for _ in range(levels + 1):
                    less += tree[rows, i1]
                    leq += tree[rows, i2]
                    i1 -= i1 & -i1
                    i2 -= i2 & -i2
                s_tot += less - (inserted - leq)
            for c in range(start, end + 1):
                idx = yv_all[:, c].copy()
                for _ in range(levels + 1):
                    tree[rows, idx] += 1
                    idx = np.minimum(idx + (idx & -idx), dump)
                inserted += 1
            start = int(end) + 1
        out[r0 : r0 + b] = s_tot
    return out


def kendall_tau_b(
    x: Any,
    y: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    n_permutations: int = 10000,
    seed: int | None = 0,
    ci_method: str = "percentile",
    max_degenerate: float = 0.05,
) -> Estimate:
    """Kendall's tau-b (Kendall 1945) with a paired bootstrap CI and a permutation p-value.

    tau-b = (concordant - discordant) / sqrt((n0 - ties_x)(n0 - ties_y)), equal to
    ``scipy.stats.kendalltau`` (variant 'b') including ties. Bootstrap and permutations as in
    :func:`spearman`. Cost is O(n^2) per resample (batched matrix products): fine up to a few
    thousand units; prefer :func:`spearman` beyond that.
    """
    confidence = _check_confidence(confidence)
    xa, ya = _paired_rank_inputs(x, y, "Kendall's tau-b")
    n = xa.size
    boot_rng, perm_rng, seed = _rngs(seed)
    # Ranks keep the signs and make +-inf safe to subtract.
    xr, yr = _rankdata(xa), _rankdata(ya)
    tau = float(_kendall_weighted(xr, yr, np.ones((1, n)))[0])

    def batch(idx: np.ndarray) -> np.ndarray:
        rows = idx.shape[0]
        flat = (np.arange(rows)[:, None] * n + idx).ravel()
        w = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float)
        return _kendall_weighted(xr, yr, w)

    lo, hi, se, notes = _resample(
        batch, tau, n, n_resamples=n_resamples, confidence=confidence, rng=boot_rng,
        method=ci_method, max_degenerate=max_degenerate, degenerate_hint=": x or y constant in the resample",
    )
    # the tau-b denominator does not change when y is permuted against x
    denom = math.sqrt(_untied_pairs(xr) * _untied_pairs(yr))

    def perm(p: np.ndarray) -> np.ndarray:
        return _kendall_s_permuted(xr, yr, p) / denom

    p, p_note = _permutation_p(perm, tau, n, n_permutations, perm_rng)
    return Estimate(
        tau, lo, hi, confidence=confidence, stderr=se, n=n,
        method=f"bootstrap {'BCa' if ci_method == 'bca' else 'percentile'}", seed=seed, p_value=p,
        statistic="kendall_tau_b", notes=notes + (p_note,),
    )
