"""The result type of every estimator: :class:`Estimate` (a value with its interval)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import KW_ONLY, dataclass

from workbench.results import to_jsonable
from workbench.stats._base import StatsError

__all__ = ["Estimate"]


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


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"


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
