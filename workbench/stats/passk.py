"""pass@k (Chen et al. 2021) and pass^k (Yao et al. 2024), per task and averaged over tasks with a bootstrap CI."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from workbench.stats._base import MIN_BOOTSTRAP_UNITS, StatsError, _check_min_n, _check_positive_int, _check_same_length
from workbench.stats.estimate import Estimate
from workbench.stats.resampling import bootstrap

__all__ = ["pass_at_k", "pass_hat_k", "pass_at_k_over_tasks", "pass_hat_k_over_tasks"]


def _check_nck(n: Any, c: Any, k: Any) -> tuple[int, int, int]:
    n = _check_positive_int(n, "n (samples per task)", 1)
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c <= n:
        raise StatsError(f"c (correct samples) must be an integer in [0, n={n}]; got {c!r}.")
    k = _check_positive_int(k, "k", 1)
    if k > n:
        raise StatsError(f"k={k} exceeds n={n} samples; pass@k needs at least k samples per task.")
    return n, int(c), k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021): 1 - C(n - c, k) / C(n, k).

    The probability that at least one of k samples drawn without replacement from n samples
    (c correct) is correct. Computed as 1 - prod_{i=n-c+1}^{n} (1 - k / i), the numerically
    stable form from the paper.
    """
    n, c, k = _check_nck(n, c, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k of Yao et al. (2024, tau-bench): C(c, k) / C(n, k).

    The probability that all k samples drawn without replacement from n (c correct) succeed:
    a reliability measure that falls with k where pass@k rises.
    """
    n, c, k = _check_nck(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _over_tasks(
    fn: Callable[[int, int, int], float],
    name: str,
    n: Any,
    c: Any,
    k: int,
    confidence: float,
    n_resamples: int,
    seed: int | None,
) -> Estimate:
    c_arr = np.asarray(c)
    if c_arr.ndim != 1:
        raise StatsError(f"c must be 1-D (correct samples per task); got shape {c_arr.shape}.")
    n_arr = np.broadcast_to(np.asarray(n), c_arr.shape) if np.ndim(n) == 0 else np.asarray(n)
    _check_same_length(n=n_arr, c=c_arr)
    _check_min_n(c_arr.size, MIN_BOOTSTRAP_UNITS, f"{name} over tasks", "tasks")
    per_task = np.array([fn(int(ni), int(ci), k) for ni, ci in zip(n_arr.tolist(), c_arr.tolist())])
    est = bootstrap(per_task, np.mean, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return dataclasses.replace(est, statistic=f"{name}@{k}", method="bootstrap percentile over tasks")


def pass_at_k_over_tasks(
    n: int | Sequence[int],
    c: Sequence[int],
    k: int,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> Estimate:
    """Mean unbiased pass@k over tasks (``n`` samples per task, ``c[t]`` correct), with a
    bootstrap CI over tasks (tasks are the units; samples within a task are not resampled)."""
    return _over_tasks(pass_at_k, "pass", n, c, k, confidence, n_resamples, seed)


def pass_hat_k_over_tasks(
    n: int | Sequence[int],
    c: Sequence[int],
    k: int,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> Estimate:
    """Mean pass^k (tau-bench) over tasks with a bootstrap CI over tasks."""
    return _over_tasks(pass_hat_k, "pass^", n, c, k, confidence, n_resamples, seed)
