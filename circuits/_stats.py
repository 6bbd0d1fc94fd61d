"""Statistics used by circuits, through :mod:`workbench.stats` (the shared implementation).

Thin adapters: means with (cluster-)bootstrap CIs over prompts, and Spearman's rho with a bootstrap CI and a
permutation p-value.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.stats import Estimate, StatsError, bootstrap, spearman

__all__ = ["mean_estimate", "spearman_estimate", "Estimate", "StatsError"]


def mean_estimate(values: Sequence[float], *, groups: Sequence[Any] | None = None, seed: int = 0,
                  n_resamples: int = 2000, confidence: float = 0.95) -> Estimate:
    """Mean with a percentile bootstrap CI; ``groups`` makes it a cluster bootstrap (resample prompts, not tokens)."""
    v = np.asarray(values, dtype=float)
    kw = {} if groups is None else {"groups": np.asarray(groups)}
    return bootstrap(v, statistic=np.mean, n_resamples=n_resamples, confidence=confidence, seed=seed, **kw)


def spearman_estimate(x: Sequence[float], y: Sequence[float], *, seed: int = 0, n_resamples: int = 2000) -> Estimate:
    """Spearman's rho with a paired bootstrap CI over units and a permutation p-value (``workbench.stats.spearman``)."""
    return spearman(np.asarray(x, float), np.asarray(y, float), n_resamples=n_resamples, seed=seed)
