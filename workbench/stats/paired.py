"""Paired and repeated-measures tests: the sign-flip permutation test of a paired mean difference and
Friedman's test (with Kendall's W) of k conditions over blocks.

References: Fisher, R. A. (1935), The Design of Experiments, sec. 21 (the paired randomisation / sign-flip
test); Friedman, M. (1937), JASA 32(200), 675-701; Kendall's W = Q / (n (k - 1)) (Kendall & Babington Smith
1939); Phipson & Smyth (2010) for the add-one correction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from workbench.stats._base import (
    MIN_BOOTSTRAP_UNITS,
    StatsError,
    _check_confidence,
    _check_min_n,
    _check_positive_int,
    _check_same_length,
    _chunks,
    _float_1d,
    _rankdata,
    _rngs,
)
from workbench.stats.estimate import Estimate
from workbench.stats.means import mean_estimate
from workbench.stats.resampling import _resample

__all__ = ["paired_mean_difference", "friedman", "chi2_sf"]


def _sign_flip_p(d: np.ndarray, n_permutations: int, rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided sign-flip p-value of ``|mean(d)|`` (exact for 2^n <= n_permutations, else add-one)."""
    n = d.size
    obs = abs(float(d.mean()))
    thr = obs - 1e-12 * max(1.0, obs)
    if 2**n <= n_permutations:
        k, total = 0, 2**n
        for s, e in _chunks(total, n):
            codes = np.arange(s, e, dtype=np.int64)[:, None]
            signs = 1.0 - 2.0 * ((codes >> np.arange(n, dtype=np.int64)) & 1)
            k += int(np.count_nonzero(np.abs(signs @ d) / n >= thr))
        return k / total, f"exact sign-flip p ({total} sign patterns)"
    k = 0
    for s, e in _chunks(n_permutations, n):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(e - s, n))
        k += int(np.count_nonzero(np.abs(signs @ d) / n >= thr))
    return (k + 1) / (n_permutations + 1), f"sign-flip p ({n_permutations} random sign patterns, add-one)"


def paired_mean_difference(
    a: Any,
    b: Any | None = None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    n_permutations: int = 10000,
    seed: int | None = 0,
    statistic: str = "mean_difference",
) -> Estimate:
    """Mean of paired differences ``a - b`` (or of ``a`` alone when ``b`` is None): the interval of
    :func:`~workbench.stats.mean_estimate` (bootstrap over pairs), with as ``p_value`` the two-sided
    **sign-flip permutation p-value** for H0: the differences are symmetric about 0 (the paired randomisation
    test; exact over all 2^n sign patterns when 2^n <= ``n_permutations``, else Monte Carlo with the add-one
    correction). :func:`~workbench.stats.paired_difference` is the same interval with clusters or a normal
    interval and no permutation test.

    Pairs are the units (items, prompts, personas...). NaN pairs are an error: drop them first.
    """
    confidence = _check_confidence(confidence)
    d = _float_1d(a, "a")
    if b is not None:
        y = _float_1d(b, "b")
        _check_same_length(a=d, b=y)
        d = d - y
    if np.isnan(d).any():
        raise StatsError(f"{int(np.isnan(d).sum())} of {d.size} paired differences are NaN; drop those pairs first.")
    _check_min_n(d.size, MIN_BOOTSTRAP_UNITS, "a paired difference", "pairs")
    n_permutations = _check_positive_int(n_permutations, "n_permutations", 1)
    _, perm_rng, seed = _rngs(seed)
    if np.all(d == d[0]):
        # only the all-plus and all-minus sign patterns reach |mean| when every difference is equal
        v = float(d[0])
        p = 1.0 if v == 0 else min(1.0, 2.0 ** (1 - d.size))
        return Estimate(v, v, v, confidence=confidence, stderr=0.0, n=d.size, method="exact (constant differences)",
                        seed=seed, p_value=p, statistic=statistic,
                        notes=("all differences are equal: the interval is degenerate; exact sign-flip p",))
    est = mean_estimate(d, n_resamples=n_resamples, confidence=confidence, seed=seed, statistic=statistic)
    p, how = _sign_flip_p(d, n_permutations, perm_rng)
    return dataclasses.replace(est, p_value=p, notes=est.notes + (how,))


def _gammaincc(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (series below a + 1, Lentz continued fraction above;
    Numerical Recipes 3rd ed., sec. 6.2)."""
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - lg))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    dd = 1.0 / b
    h = dd
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2.0
        dd = an * dd + b
        dd = tiny if abs(dd) < tiny else dd
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        dd = 1.0 / dd
        delta = dd * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - lg) * h)


def chi2_sf(x: float, df: int) -> float:
    """Survival function of the chi-square distribution, ``P(X >= x)`` for ``df`` degrees of freedom."""
    df = _check_positive_int(df, "df", 1)
    return _gammaincc(df / 2.0, max(float(x), 0.0) / 2.0)


def _friedman_q(ranks: np.ndarray, tie_term: float) -> np.ndarray:
    """Friedman's chi-square from within-block ranks ``[..., n_blocks, k]`` (tie-corrected)."""
    n, k = ranks.shape[-2:]
    r = ranks.sum(axis=-2)
    q = 12.0 / (n * k * (k + 1)) * (r**2).sum(axis=-1) - 3.0 * n * (k + 1)
    return q / tie_term


def friedman(
    data: Any,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    n_permutations: int = 5000,
    seed: int | None = 0,
) -> Estimate:
    """Friedman's repeated-measures test of whether ``k`` conditions differ, over ``n`` blocks.

    ``data`` is ``[n_blocks, k]`` (e.g. items x response formats). Values are ranked within each
    block (average ranks for ties). Returned: **Kendall's W** = Q / (n (k - 1)) in [0, 1] (0: the
    conditions do not order the blocks' values consistently; 1: every block ranks them the same),
    with a bootstrap CI over blocks, and as ``p_value`` the within-block permutation p-value of Q
    (condition labels shuffled independently in each block; add-one). ``notes`` carry Friedman's
    Q and its asymptotic chi-square p-value (k - 1 df, tie-corrected; equals
    ``scipy.stats.friedmanchisquare``).
    """
    confidence = _check_confidence(confidence)
    x = np.asarray(data, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise StatsError(f"friedman needs a 2-D array [n_blocks, k >= 2]; got shape {x.shape}.")
    if np.isnan(x).any():
        raise StatsError("friedman data has NaN values; drop the incomplete blocks first.")
    n, k = x.shape
    _check_min_n(n, MIN_BOOTSTRAP_UNITS, "a Friedman test", "blocks")
    boot_rng, perm_rng, seed = _rngs(seed)
    ranks = _rankdata(x)

    def tie_term_of(rk: np.ndarray) -> np.ndarray:
        # per block sum of (t^3 - t) over tie groups, from the ranks' multiplicities
        srt = np.sort(rk, axis=-1)
        out = np.zeros(srt.shape[:-1])
        for j in range(k):
            t = (srt == srt[..., j:j + 1]).sum(axis=-1)
            out = out + (t**3 - t) / t  # each member of a tie group adds (t^3 - t) / t
        return out

    ties = tie_term_of(ranks).sum()
    denom = 1.0 - ties / (n * (k**3 - k))
    if denom <= 0:
        raise StatsError("every block is constant across conditions: the Friedman statistic is undefined.")
    q = float(_friedman_q(ranks, denom))
    w = q / (n * (k - 1))
    p_asym = chi2_sf(q, k - 1)
    n_permutations = _check_positive_int(n_permutations, "n_permutations", 1)
    hits = 0
    for s, e in _chunks(n_permutations, n * k):
        perm = perm_rng.permuted(np.broadcast_to(ranks, (e - s, n, k)), axis=2)
        hits += int(np.count_nonzero(_friedman_q(perm, denom) >= q - 1e-12 * max(1.0, q)))
    p_perm = (hits + 1) / (n_permutations + 1)

    def batch_w(u: np.ndarray) -> np.ndarray:
        rk = ranks[u]  # [b, n, k]
        den = 1.0 - tie_term_of(rk).sum(axis=-1) / (n * (k**3 - k))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, _friedman_q(rk, 1.0) / np.where(den > 0, den, 1.0) / (n * (k - 1)), np.nan)

    lo, hi, se, more = _resample(batch_w, w, n, n_resamples=n_resamples, confidence=confidence, rng=boot_rng,
                                 method="percentile", degenerate_hint=" (a resample with every block constant)")
    return Estimate(w, min(lo, w), max(hi, w), confidence=confidence, stderr=se, n=n,
                    method="bootstrap percentile", seed=seed, p_value=p_perm, statistic="kendall_w",
                    notes=(f"Friedman Q = {q:.4g} (k = {k} conditions, {n} blocks); asymptotic chi-square p = "
                           f"{p_asym:.3g} ({k - 1} df)", f"p_value: within-block permutation ({n_permutations} "
                           "permutations, add-one)") + more)
