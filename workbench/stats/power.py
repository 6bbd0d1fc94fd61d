"""Power and sample size for comparing two rates (two-sample z-test, normal approximation)."""

from __future__ import annotations

import math

from workbench.stats._base import _NORMAL, StatsError

__all__ = ["two_proportion_power", "two_proportion_sample_size", "detectable_difference"]


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
