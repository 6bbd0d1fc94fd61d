"""Statistics used by circuits, through :mod:`workbench.stats` (the shared implementation).

Thin adapters: means with cluster-bootstrap CIs over prompts, paired differences, rank agreement.
While ``workbench.stats`` has not landed in a checkout, a minimal percentile-bootstrap fallback with
the same :class:`Estimate` fields keeps the package usable (it says so in ``method``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["mean_estimate", "spearman_estimate", "Estimate", "HAVE_SHARED_STATS"]

try:  # the shared implementation
    from workbench.stats import Estimate, StatsError, bootstrap, spearman  # type: ignore

    HAVE_SHARED_STATS = True
except ImportError:  # pragma: no cover - only before the stats branch is merged
    HAVE_SHARED_STATS = False

    class StatsError(ValueError):  # type: ignore[no-redef]
        pass

    @dataclass(frozen=True)
    class Estimate:  # type: ignore[no-redef]
        value: float
        ci_low: float
        ci_high: float
        confidence: float = 0.95
        stderr: float | None = None
        n: int = 0
        method: str = ""
        seed: int | None = None
        p_value: float | None = None
        statistic: str = ""

        def excludes(self, x: float) -> bool:
            return not (self.ci_low <= x <= self.ci_high)

    def bootstrap(values, statistic=np.mean, n_resamples=2000, confidence=0.95, seed=0, method="percentile",
                  groups=None):
        v = np.asarray(values, dtype=float)
        g = np.arange(len(v)) if groups is None else np.asarray(groups)
        units = np.unique(g)
        members = [np.nonzero(g == u)[0] for u in units]
        rng = np.random.default_rng(seed)
        stats = []
        for _ in range(n_resamples):
            pick = rng.integers(0, len(units), len(units))
            stats.append(statistic(np.concatenate([v[members[i]] for i in pick])))
        a = (1 - confidence) / 2
        return Estimate(float(statistic(v)), float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a)),
                        confidence, float(np.std(stats)), len(units), "bootstrap percentile (fallback)", seed)

    def spearman(x, y, n_resamples=2000, confidence=0.95, seed=0, **kw):
        from scipy.stats import spearmanr

        x, y = np.asarray(x, float), np.asarray(y, float)
        rho = float(spearmanr(x, y).statistic)
        rng = np.random.default_rng(seed)
        vals = []
        for _ in range(n_resamples):
            i = rng.integers(0, len(x), len(x))
            r = spearmanr(x[i], y[i]).statistic
            if np.isfinite(r):
                vals.append(r)
        a = (1 - confidence) / 2
        return Estimate(rho, float(np.quantile(vals, a)), float(np.quantile(vals, 1 - a)), confidence,
                        float(np.std(vals)), len(x), "bootstrap percentile (fallback)", seed, statistic="spearman_rho")


def mean_estimate(values: Sequence[float], *, groups: Sequence[Any] | None = None, seed: int = 0,
                  n_resamples: int = 2000, confidence: float = 0.95) -> Estimate:
    """Mean with a percentile bootstrap CI; ``groups`` makes it a cluster bootstrap (resample prompts, not tokens)."""
    v = np.asarray(values, dtype=float)
    kw = {} if groups is None else {"groups": np.asarray(groups)}
    return bootstrap(v, statistic=np.mean, n_resamples=n_resamples, confidence=confidence, seed=seed, **kw)


def spearman_estimate(x: Sequence[float], y: Sequence[float], *, seed: int = 0, n_resamples: int = 2000) -> Estimate:
    """Spearman's rho with a bootstrap CI (and the shared implementation's permutation p-value)."""
    return spearman(np.asarray(x, float), np.asarray(y, float), n_resamples=n_resamples, seed=seed)
