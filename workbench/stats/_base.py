"""Shared internals of :mod:`workbench.stats`: the error, validation, ranks, seeds, chunking."""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError, check_count

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
        entropy = np.random.SeedSequence().entropy  # an int when drawn fresh
        seed = int(entropy) % (2**63)  # type: ignore[arg-type]
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
    """Average ranks (1-based) along the last axis; ties get their mean rank (scipy 'average').
    Vectorised over any leading axes (rows, layers, bootstrap resamples)."""
    a = np.asarray(a, dtype=float)
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    n = a.shape[-1]
    new = np.ones(s.shape, dtype=bool)
    new[..., 1:] = s[..., 1:] != s[..., :-1]
    last = np.ones(s.shape, dtype=bool)
    last[..., :-1] = new[..., 1:]
    pos = np.broadcast_to(np.arange(n), s.shape)
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, pos, n), -1), axis=-1), -1)
    ranks = np.empty(s.shape, dtype=float)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=-1)
    return ranks


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
