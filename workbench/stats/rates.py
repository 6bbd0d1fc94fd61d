"""Rates: the Wilson interval and :func:`proportion` (Wilson, or a cluster bootstrap over prompts)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from workbench.stats._base import StatsError, _check_confidence, _check_min_n, _check_positive_int, _float_1d, _z
from workbench.stats.estimate import Estimate
from workbench.stats.resampling import _members_of, bootstrap

__all__ = ["wilson", "proportion"]


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927) score interval for a binomial rate ``successes / n``.

    The interval inverts the score test |p_hat - p| <= z sqrt(p (1 - p) / n):
    centre (p_hat + z^2 / 2n) / (1 + z^2 / n), half-width
    z / (1 + z^2 / n) * sqrt(p_hat (1 - p_hat) / n + z^2 / 4n^2). Unlike the Wald interval it
    stays inside [0, 1] and is not degenerate at 0 or n successes.
    """
    confidence = _check_confidence(confidence)
    n = _check_positive_int(n, "n (number of trials)", 1)
    if isinstance(successes, bool) or not isinstance(successes, (int, np.integer)):
        if isinstance(successes, (float, np.floating)) and float(successes).is_integer():
            successes = int(successes)
        else:
            raise StatsError(f"successes must be a whole number; got {successes!r}.")
    if not 0 <= successes <= n:
        raise StatsError(f"successes must be between 0 and n={n}; got {successes}.")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def _binary(values: Any, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise StatsError(f"{name} must be 1-D (one 0/1 outcome per item); got shape {a.shape}.")
    if a.dtype == bool:
        return a.astype(float)
    a = _float_1d(a, name)
    if not np.all((a == 0) | (a == 1)):
        bad = a[(a != 0) & (a != 1)][:3]
        raise StatsError(f"{name} must contain only 0/1 (or booleans); found {bad.tolist()}.")
    return a


def proportion(
    x: Any,
    n: int | None = None,
    *,
    confidence: float = 0.95,
    groups: Sequence[Any] | None = None,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> Estimate:
    """A rate with its confidence interval.

    * ``proportion(7, 20)``: 7 successes in 20 independent trials, Wilson (1927) interval.
    * ``proportion([1, 0, 1, ...])``: per-item 0/1 outcomes (or booleans), Wilson interval.
    * ``proportion(outcomes, groups=prompt_ids)``: several outcomes per prompt; the interval is
      the cluster bootstrap over prompts (Wilson would treat correlated generations as
      independent). If every outcome is identical the bootstrap is degenerate, so the Wilson
      interval with n = number of prompts is returned instead (noted in ``notes``).

    ``stderr`` is the Wald standard error sqrt(p (1 - p) / n) for Wilson, the bootstrap SD
    for the cluster bootstrap.
    """
    confidence = _check_confidence(confidence)
    if n is not None:
        if groups is not None:
            raise StatsError("pass either counts (x, n) or per-item outcomes with groups, not both.")
        lo, hi = wilson(x, n, confidence)
        p = int(x) / n
        return Estimate(
            p, lo, hi, confidence=confidence, stderr=math.sqrt(p * (1 - p) / n), n=n,
            method="wilson", statistic="proportion",
        )
    a = _binary(x, "outcomes")
    _check_min_n(a.size, 1, "a proportion", "items")
    if groups is None:
        k = int(a.sum())
        return proportion(k, a.size, confidence=confidence)
    members, _ = _members_of(groups, a.size)
    p = float(a.mean())
    if np.all(a == a[0]):
        g = len(members)
        lo, hi = wilson(int(a[0]) * g, g, confidence)
        return Estimate(
            p, lo, hi, confidence=confidence, stderr=0.0, n=g, method="wilson",
            statistic="proportion",
            notes=(
                f"all {a.size} outcomes are {int(a[0])}: cluster bootstrap is degenerate; "
                f"Wilson interval over the {g} clusters instead",
            ),
        )
    est = bootstrap(a, np.mean, groups=groups, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return dataclasses.replace(est, statistic="proportion")
