"""Statistics for interpretability results: every number with an interval.

Pure numpy (plus the standard library's :class:`statistics.NormalDist`); scipy, scikit-learn
and statsmodels appear only in the tests, as references. Every random choice is drawn from
``numpy.random.default_rng(seed)``, so a result is reproducible from its ``seed``.

Conventions
-----------
* Every estimator returns an :class:`Estimate` (value, confidence interval, stderr when
  defined, n, method, seed, optional p-value). Nothing returns NaN: an undefined quantity raises
  :class:`StatsError` (a :class:`ValueError`) that says what was wrong and what to do.
* The bootstrap resamples **units** (prompts, personas, layers...). When several generations
  share a prompt, pass ``groups=`` so the prompts are resampled, not the generations
  (a cluster bootstrap): generations of one prompt are correlated, and treating them as
  independent makes intervals too narrow.
* Rank statistics (Spearman, Kendall tau-b, AUROC) use average ranks for ties, so their
  point values equal scipy's / scikit-learn's.

References
----------
* Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference.
  JASA 22(158), 209-212.
* Efron, B. (1987). Better bootstrap confidence intervals. JASA 82(397), 171-185 (BCa);
  Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 14 (eq. 14.9-14.15).
* Davison & Hinkley (1997), Bootstrap Methods and their Application, sec. 3.8 (cluster
  bootstrap: resample the top-level units).
* DeLong, E. R., DeLong, D. M. & Clarke-Pearson, D. L. (1988). Comparing the areas under two or
  more correlated ROC curves: a nonparametric approach. Biometrics 44(3), 837-845; fast midrank
  form from Sun & Xu (2014), IEEE Signal Processing Letters 21(11).
* Chen, M. et al. (2021). Evaluating Large Language Models Trained on Code (pass@k unbiased
  estimator, eq. 1 and its numerically stable product form).
* Yao, S. et al. (2024). tau-bench: A Benchmark for Tool-Agent-User Interaction in Real-World
  Domains (pass^k = C(c, k) / C(n, k), averaged over tasks).
* Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Stat. 6.
* Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57(1).
* Fleiss, J. L., Levin, B. & Paik, M. C. (2003). Statistical Methods for Rates and Proportions,
  3rd ed., eq. 4.14 (two-proportion sample size, normal approximation, no continuity
  correction).
* Cohen, J. (1960). A coefficient of agreement for nominal scales. Educ. Psychol. Meas. 20(1).
* Kendall, M. G. (1945). The treatment of ties in ranking problems. Biometrika 33(3) (tau-b).
* Friedman, M. (1937). The use of ranks to avoid the assumption of normality implicit in the
  analysis of variance. JASA 32(200), 675-701; Kendall's W = Q / (n (k - 1)) (Kendall & Babington
  Smith 1939).
* Fisher, R. A. (1935), The Design of Experiments, sec. 21 (the paired randomisation / sign-flip test).
* Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be zero. Stat. Appl.
  Genet. Mol. Biol. 9(1) (the (k + 1) / (n + 1) correction).
"""

from __future__ import annotations

from workbench.errors import WorkbenchError, check_count
import dataclasses
import itertools
import math
from dataclasses import KW_ONLY, dataclass
from statistics import NormalDist
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from workbench.results import to_jsonable

__all__ = [
    "StatsError",
    "Estimate",
    "bootstrap",
    "wilson",
    "proportion",
    "spearman",
    "kendall_tau_b",
    "cohens_kappa",
    "auroc",
    "pass_at_k",
    "pass_hat_k",
    "pass_at_k_over_tasks",
    "pass_hat_k_over_tasks",
    "AdjustedPValues",
    "holm",
    "benjamini_hochberg",
    "adjust_pvalues",
    "two_proportion_sample_size",
    "two_proportion_power",
    "detectable_difference",
    "MIN_BOOTSTRAP_UNITS",
    "MIN_CORRELATION_UNITS",
    "paired_mean_difference",
    "friedman",
    "chi2_sf",
]

#: Fewest units (or clusters) a bootstrap interval is computed from. Two is the mathematical
#: minimum; intervals from fewer than ~10 units are unreliable (anti-conservative).
MIN_BOOTSTRAP_UNITS = 2
#: Fewest pairs a rank correlation is computed from (with 2 pairs it is always +-1).
MIN_CORRELATION_UNITS = 3

_NORMAL = NormalDist()
# Elements of work per vectorised chunk (bounds memory: ~8 bytes * this * a small factor).
_CHUNK_ELEMENTS = 2_000_000


class StatsError(WorkbenchError, ValueError):
    """A statistic is undefined for these inputs, or the inputs are invalid.

    The message says what was wrong and what to do about it. Raised instead of returning NaN.
    """


# --------------------------------------------------------------------------------------------
# The result type
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval.

    Attributes:
        value: the point estimate (computed on the full data, never a bootstrap mean).
        ci_low, ci_high: the confidence interval at ``confidence``.
        confidence: coverage of the interval, e.g. 0.95.
        stderr: standard error when defined (bootstrap standard deviation, DeLong, Wald...).
        n: number of units the estimate is over (prompts/clusters for a cluster bootstrap,
            tasks for pass@k over tasks, pairs for a correlation).
        method: how the interval was computed, e.g. ``"bootstrap percentile"``, ``"wilson"``.
        seed: the seed of the random draws, or None for analytic intervals.
        p_value: a p-value when the estimator has a natural null (correlation = 0,
            AUROC = 0.5); see the estimator's docstring for which test.
        statistic: name of the quantity, e.g. ``"spearman_rho"``.
        notes: anything a reader of the number should know (dropped degenerate resamples,
            fallbacks).
    """

    value: float
    ci_low: float
    ci_high: float
    _: KW_ONLY
    confidence: float = 0.95
    stderr: float | None = None
    n: int
    method: str
    seed: int | None = None
    p_value: float | None = None
    statistic: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("value", "ci_low", "ci_high"):
            v = getattr(self, name)
            try:
                fv = float(v)
            except (TypeError, ValueError):
                fv = float("nan")
            if math.isnan(fv):
                raise StatsError(f"Estimate.{name} is {v!r}; an Estimate is never NaN or None.")
            object.__setattr__(self, name, fv)
        if self.ci_low > self.ci_high:
            raise StatsError(
                f"Estimate interval is reversed: ci_low={self.ci_low} > ci_high={self.ci_high}."
            )
        if not 0.0 < self.confidence < 1.0:
            raise StatsError(f"confidence must be in (0, 1); got {self.confidence}.")
        if self.stderr is not None:
            object.__setattr__(self, "stderr", float(self.stderr))
        if self.p_value is not None:
            object.__setattr__(self, "p_value", float(self.p_value))
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "notes", tuple(self.notes))

    # ----------------------------------------------------------------------------------------
    def excludes(self, x: float) -> bool:
        """True when ``x`` lies outside the closed interval [ci_low, ci_high]."""
        return bool(x < self.ci_low or x > self.ci_high)

    def contains(self, x: float) -> bool:
        """True when ``x`` lies inside the closed interval [ci_low, ci_high]."""
        return not self.excludes(x)

    @property
    def width(self) -> float:
        return self.ci_high - self.ci_low

    def to_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "Estimate":
        d = dict(d)
        d["notes"] = tuple(d.get("notes", ()))
        return cls(**d)

    def format(self, digits: int | None = None) -> str:
        """``0.62 [0.51, 0.72] (95% bootstrap percentile, n=50, p=0.003)``."""
        d = digits if digits is not None else _decimals(self.value, self.ci_low, self.ci_high)
        extra = f", p={_fmt_p(self.p_value)}" if self.p_value is not None else ""
        return (
            f"{self.value:.{d}f} [{self.ci_low:.{d}f}, {self.ci_high:.{d}f}] "
            f"({_fmt_conf(self.confidence)} {self.method}, n={self.n}{extra})"
        )

    def __str__(self) -> str:
        return self.format()


def _fmt_conf(c: float) -> str:
    return f"{c * 100:.10g}%"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}"


def _decimals(*vals: float) -> int:
    """Decimals so that the interval's width shows about two significant digits."""
    lo, hi = min(vals), max(vals)
    width = hi - lo
    big = max(abs(v) for v in vals)
    if width > 0 and math.isfinite(width):
        d = math.ceil(-math.log10(width)) + 1
    elif big > 0 and math.isfinite(big):
        d = 2 - math.floor(math.log10(big))
    else:
        d = 2
    floor = 2 if big < 10 else 0
    return int(min(max(d, floor), 10))


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise StatsError(f"confidence must be strictly between 0 and 1 (e.g. 0.95); got {confidence}.")
    return c


def _check_positive_int(x: Any, name: str, minimum: int = 1) -> int:
    return check_count(x, name, minimum, StatsError)


def _float_1d(x: Any, name: str, *, allow_inf: bool = False) -> np.ndarray:
    """A 1-D float array without NaN (and without +-inf unless ``allow_inf``)."""
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise StatsError(f"{name} must be numeric; could not convert it to floats ({e}).") from None
    if a.ndim != 1:
        raise StatsError(f"{name} must be 1-D (one value per unit); got shape {a.shape}.")
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        idx = np.flatnonzero(bad)
        kind = "NaN" if allow_inf else "NaN or infinite"
        raise StatsError(
            f"{name} has {idx.size} {kind} value(s) (first at index {idx[0]}); drop those units "
            f"or fix the measurement before computing statistics."
        )
    return a


def _check_same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {v} values" for k, v in lengths.items())
        raise StatsError(
            f"mismatched lengths: {desc}. Pass exactly one value per unit in each input, paired "
            f"by position."
        )
    return next(iter(lengths.values()))


def _check_min_n(n: int, minimum: int, what: str, unit: str = "units") -> None:
    if n < minimum:
        raise StatsError(f"{what} needs at least {minimum} {unit}; got {n}. Collect more {unit}.")


def _check_not_constant(a: np.ndarray, name: str, what: str) -> None:
    if a.size and np.all(a == a[0]):
        raise StatsError(
            f"{name} is constant (every value is {a[0]:.6g}, n={a.size}); {what} is undefined. "
            f"Check that {name} actually varies across units (a dead probe, a saturated scorer, "
            f"a steering coefficient with no effect?)."
        )


def _z(confidence: float) -> float:
    return _NORMAL.inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def _rngs(seed: int | None) -> tuple[np.random.Generator, np.random.Generator, int]:
    """(bootstrap rng, permutation rng, recorded seed). ``seed=None`` draws and records one."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise StatsError(f"seed must be an integer (or None to draw one); got {seed!r}.")
    seed = int(seed)
    boot = np.random.default_rng(seed)
    perm = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    return boot, perm, seed


# --------------------------------------------------------------------------------------------
# Ranks and vectorised kernels
# --------------------------------------------------------------------------------------------


def _rankdata(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis; ties get their mean rank (scipy 'average')."""
    a = np.asarray(a, dtype=float)
    one_d = a.ndim == 1
    a2 = a[None, :] if one_d else a
    b, n = a2.shape
    order = np.argsort(a2, axis=-1, kind="stable")
    s = np.take_along_axis(a2, order, axis=-1)
    new = np.ones((b, n), dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    last = np.ones((b, n), dtype=bool)
    last[:, :-1] = new[:, 1:]
    pos = np.broadcast_to(np.arange(n), (b, n))
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((b, n), dtype=float)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=-1)
    return ranks[0] if one_d else ranks


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation; NaN where a row is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    num = np.einsum("ij,ij->i", a, b)
    den = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
    out = np.full(num.shape, np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return np.clip(out, -1.0, 1.0)


def _chunks(total: int, per_row: int) -> list[tuple[int, int]]:
    rows = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [(s, min(s + rows, total)) for s in range(0, total, rows)]


# --------------------------------------------------------------------------------------------
# Bootstrap core: resample unit indices, evaluate a batched statistic, form the interval
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Rank correlations
# --------------------------------------------------------------------------------------------


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
    n = xr.size
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
            for c in range(start, end + 1):  # query the whole x block before inserting it
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
            start = end + 1
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


# --------------------------------------------------------------------------------------------
# Agreement and discrimination
# --------------------------------------------------------------------------------------------


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
    a: Sequence[Any],
    b: Sequence[Any],
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


def _binary_labels(labels: Any, pos_label: Any) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise StatsError(f"labels must be 1-D; got shape {lab.shape}.")
    if lab.dtype.kind == "f" and np.isnan(lab).any():
        raise StatsError("labels contain NaN; drop those units first.")
    values = np.unique(lab)
    if values.size > 2:
        raise StatsError(f"AUROC needs binary labels; got {values.size} distinct labels {values[:5].tolist()}.")
    if pos_label is None:
        as_set = set(values.tolist())
        if lab.dtype == bool or as_set <= {0, 1} or as_set <= {-1, 1}:
            pos_label = 1
        else:
            raise StatsError(f"labels are {sorted(as_set, key=str)!r}; pass pos_label= to say which is positive.")
    if values.size < 2:
        only = values[0].item() if hasattr(values[0], "item") else values[0]
        raise StatsError(
            f"AUROC needs both classes; got only label {only!r} (n={lab.size}). Add units of the "
            f"other class."
        )
    if pos_label not in set(values.tolist()):
        raise StatsError(f"pos_label={pos_label!r} is not among the labels {values.tolist()!r}.")
    return lab == pos_label


def _delong(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AUROC and its DeLong (1988) standard error, via midranks (Sun & Xu 2014)."""
    m, k = pos.size, neg.size
    r_all = _rankdata(np.concatenate([pos, neg]))
    v10 = (r_all[:m] - _rankdata(pos)) / k  # per positive: P(neg < pos) + 0.5 P(tie)
    v01 = 1.0 - (r_all[m:] - _rankdata(neg)) / m  # per negative: P(pos > neg) + 0.5 P(tie)
    auc = float(v10.mean())
    var = float(np.var(v10, ddof=1)) / m + float(np.var(v01, ddof=1)) / k
    return auc, math.sqrt(max(var, 0.0))


def auroc(
    scores: Any,
    labels: Any,
    *,
    pos_label: Any = None,
    confidence: float = 0.95,
    ci_method: str = "bootstrap",
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> Estimate:
    """Area under the ROC curve, rank-based (Mann-Whitney U / (n_pos n_neg), ties count 1/2).

    Equal to ``sklearn.metrics.roc_auc_score``. The interval is a bootstrap **stratified by
    class** (each class resampled separately, so every resample has both) or, with
    ``ci_method="delong"``, the normal interval AUROC +- z SE clipped to [0, 1].

    ``stderr`` is always the DeLong et al. (1988) standard error; ``p_value`` is the two-sided
    DeLong z-test of AUROC = 0.5 (None when SE is 0, e.g. perfect separation).

    Raises StatsError for a single class ("AUROC needs both classes; got only label 1 (n=12)"),
    fewer than 2 units in a class, constant scores, NaN, or mismatched lengths.
    """
    confidence = _check_confidence(confidence)
    s = _float_1d(scores, "scores", allow_inf=True)
    is_pos = _binary_labels(labels, pos_label)
    n = _check_same_length(scores=s, labels=is_pos)
    pos, neg = s[is_pos], s[~is_pos]
    if pos.size < 2 or neg.size < 2:
        raise StatsError(
            f"AUROC with an interval needs at least 2 units of each class; got {pos.size} "
            f"positive and {neg.size} negative. Add units of the smaller class."
        )
    _check_not_constant(s, "scores", "AUROC")
    rank_input = _rankdata(s)  # makes +-inf safe
    pos_r, neg_r = rank_input[is_pos], rank_input[~is_pos]
    auc, se = _delong(pos_r, neg_r)
    p_value = None
    if se > 0:
        z = (auc - 0.5) / se
        p_value = 2.0 * (1.0 - _NORMAL.cdf(abs(z)))
    notes: tuple[str, ...] = ()
    boot_rng, _, used_seed = _rngs(seed)
    if ci_method == "delong":
        h = _z(confidence) * se
        lo, hi = max(0.0, auc - h), min(1.0, auc + h)
        method, used_seed = "delong", None
    elif ci_method == "bootstrap":
        ordered = np.concatenate([pos_r, neg_r])
        m, k = pos_r.size, neg_r.size
        strata = [np.arange(m), np.arange(m, m + k)]

        def batch(idx: np.ndarray) -> np.ndarray:
            r = _rankdata(ordered[idx])
            return (r[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * k)

        lo, hi, _, notes = _resample(
            batch, auc, n, n_resamples=n_resamples, confidence=confidence, rng=boot_rng,
            method="percentile", strata_members=strata,
        )
        method = "stratified bootstrap percentile"
    else:
        raise StatsError(f"ci_method must be 'bootstrap' or 'delong'; got {ci_method!r}.")
    return Estimate(
        auc, lo, hi, confidence=confidence, stderr=se, n=n, method=method, seed=used_seed,
        p_value=p_value, statistic="auroc",
        notes=notes + (f"{pos.size} positive, {neg.size} negative; stderr and p-value from DeLong",),
    )


# --------------------------------------------------------------------------------------------
# pass@k and pass^k
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Multiple comparisons
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Power and sample size for comparing two rates
# --------------------------------------------------------------------------------------------


def _check_rate(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 < p < 1.0:
        raise StatsError(f"{name} must be a rate strictly between 0 and 1; got {p}.")
    return p


def _z_alpha(alpha: float, two_sided: bool) -> float:
    if not 0.0 < alpha < 1.0:
        raise StatsError(f"alpha must be in (0, 1); got {alpha}.")
    return _NORMAL.inv_cdf(1.0 - alpha / 2.0 if two_sided else 1.0 - alpha)


def two_proportion_power(
    n: float, p1: float, p2: float, alpha: float = 0.05, two_sided: bool = True
) -> float:
    """Power of the two-sample z-test of p1 = p2 with ``n`` units per group (normal
    approximation, pooled variance under the null; the far tail is ignored):
    Phi((|p1 - p2| sqrt(n) - z_a sqrt(2 pbar qbar)) / sqrt(p1 q1 + p2 q2))."""
    p1, p2 = _check_rate(p1, "p1"), _check_rate(p2, "p2")
    if n <= 0:
        raise StatsError(f"n must be positive; got {n}.")
    za = _z_alpha(alpha, two_sided)
    pbar = (p1 + p2) / 2.0
    num = abs(p1 - p2) * math.sqrt(n) - za * math.sqrt(2 * pbar * (1 - pbar))
    return _NORMAL.cdf(num / math.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))


def two_proportion_sample_size(
    p1: float, p2: float, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> int:
    """Units per group to detect rates p1 vs p2 with the two-sample z-test.

    Fleiss, Levin & Paik (2003) eq. 4.14 without continuity correction:
    n = [z_a sqrt(2 pbar qbar) + z_b sqrt(p1 q1 + p2 q2)]^2 / (p1 - p2)^2, pbar = (p1 + p2)/2,
    z_a = z_{1 - alpha/2} (two-sided) or z_{1 - alpha}, z_b = z_{power}; rounded up.
    Example: refusal 50% -> 60% needs 388 prompts per condition at alpha 0.05, power 0.8.
    """
    p1, p2 = _check_rate(p1, "p1"), _check_rate(p2, "p2")
    if p1 == p2:
        raise StatsError("p1 equals p2: no sample size detects a zero difference.")
    if not 0.0 < power < 1.0:
        raise StatsError(f"power must be in (0, 1); got {power}.")
    za, zb = _z_alpha(alpha, two_sided), _NORMAL.inv_cdf(power)
    pbar = (p1 + p2) / 2.0
    root = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return int(math.ceil(root**2 / (p1 - p2) ** 2 - 1e-9))


def detectable_difference(
    n: float,
    p1: float,
    alpha: float = 0.05,
    power: float = 0.8,
    two_sided: bool = True,
    direction: int = +1,
) -> float:
    """Smallest |p2 - p1| detectable with ``n`` units per group at this alpha and power.

    Inverts :func:`two_proportion_power` by bisection over p2 above (``direction=+1``) or below
    (``-1``) p1. Raises StatsError if even p2 -> 1 (or 0) is not detectable.
    """
    p1 = _check_rate(p1, "p1")
    if direction not in (+1, -1):
        raise StatsError(f"direction must be +1 or -1; got {direction}.")
    if not 0.0 < power < 1.0:
        raise StatsError(f"power must be in (0, 1); got {power}.")
    eps = 1e-9
    lo, hi = (p1, 1.0 - eps) if direction > 0 else (eps, p1)
    far = hi if direction > 0 else lo
    if two_proportion_power(n, p1, far, alpha, two_sided) < power:
        raise StatsError(
            f"with n={n} per group no rate {'above' if direction > 0 else 'below'} p1={p1} is "
            f"detectable at power {power}; increase n."
        )
    near, far_ = (lo, hi) if direction > 0 else (hi, lo)
    for _ in range(200):
        mid = (near + far_) / 2.0
        if mid == p1 or two_proportion_power(n, p1, mid, alpha, two_sided) < power:
            near = mid
        else:
            far_ = mid
        if abs(far_ - near) < 1e-12:
            break
    return abs(far_ - p1)


# --------------------------------------------------------------------------------------------
# Paired differences and repeated measures (sign-flip and within-block permutation tests)
# --------------------------------------------------------------------------------------------


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
    """Mean of paired differences ``a - b`` (or of ``a`` alone when ``b`` is None) with a bootstrap
    CI over pairs and a two-sided **sign-flip permutation p-value** for H0: the differences are
    symmetric about 0 (the paired randomisation test; exact over all 2^n sign patterns when
    2^n <= ``n_permutations``, otherwise Monte Carlo with the add-one correction).

    Pairs are the units (items, prompts, personas...). NaN pairs are an error: drop them first.
    """
    confidence = _check_confidence(confidence)
    d = _float_1d(a, "a")
    if b is not None:
        y = _float_1d(b, "b")
        _check_same_length(a=d, b=y)
        d = d - y
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
    est = bootstrap(d, np.mean, n_resamples=n_resamples, confidence=confidence, seed=seed)
    p, how = _sign_flip_p(d, n_permutations, perm_rng)
    return dataclasses.replace(est, p_value=p, statistic=statistic, notes=est.notes + (how,))


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
