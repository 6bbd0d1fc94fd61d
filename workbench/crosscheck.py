"""Cross-checks: does an internal measurement agree with behaviour over the same units?

An interpretability claim ("layer 14's refusal direction mediates refusal", "this persona
vector steers the persona", "head 5.1 does induction") predicts that an internal measurement
and a behavioural measurement move together across some units: prompts, personas, layers,
steering coefficients, heads. :class:`CrossCheck` pairs the two measurements unit by unit and
answers with a rank correlation (bootstrap CI + permutation p-value), optionally Cohen's kappa
after thresholding, and a verdict.

The verdict rule (``confidence`` = 1 - alpha, ``null_band`` = b, ``expected_sign`` = s):

1. **inconclusive** if there are fewer than ``min_units`` units (default 10): below that a
   bootstrap interval of a rank correlation is too unreliable (anti-conservative) to trust,
   whatever it says. Lower ``min_units`` deliberately if you must; the permutation p-value
   (exact for n! <= n_permutations) still has to pass.
2. **inconclusive** if either measurement is constant across units (no correlation exists);
   the reason names which one.
3. **disagree** ("negligible") if the whole CI lies strictly inside (-b, b): the data rule out
   even a weak monotone relation, so the internal measurement does not track behaviour, even
   when the CI also excludes 0 (a tiny correlation made significant by many units is not
   agreement). Default b = 0.1 (|rho| < 0.1, rho^2 < 1%: "negligible" by Cohen's 1988
   conventions). ``null_band=0`` switches this rule off.
4. **agree** if the CI excludes 0 on the side of ``expected_sign`` **and** the permutation
   p-value is < alpha. Both are required: with few units the percentile bootstrap of a rank
   correlation is overconfident, and the permutation test is exact.
5. **disagree** ("opposite") if the CI excludes 0 on the other side and p < alpha.
6. **inconclusive** otherwise (CI contains 0 but is too wide to rule out a relation, or the
   CI and the permutation test disagree): the reason says which and suggests more units.

When these verdicts are computed for many cross-checks at once (layers, heads), correct the
p-values with :func:`workbench.stats.holm` or :func:`workbench.stats.benjamini_hochberg`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from workbench import stats
from workbench.results import Provenance, data_hash, to_jsonable
from workbench.stats import Estimate, StatsError

__all__ = ["CrossCheck", "VERDICTS", "DEFAULT_NULL_BAND", "DEFAULT_MIN_UNITS"]

VERDICTS = ("agree", "disagree", "inconclusive")
DEFAULT_NULL_BAND = 0.1
DEFAULT_MIN_UNITS = 10
_METHODS = {"spearman": ("Spearman rho", stats.spearman), "kendall": ("Kendall tau-b", stats.kendall_tau_b)}


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a


def _is_binary(a: np.ndarray) -> bool:
    return bool(np.all((a == 0) | (a == 1)))


@dataclass(frozen=True, eq=False)
class CrossCheck:
    """An internal and a behavioural measurement over the same units, and whether they agree.

    Build with :meth:`from_measurements` (aligned sequences) or :meth:`from_mappings`
    (``{unit: value}`` dicts, aligned by key). See the module docstring for the verdict rule.

    Attributes:
        units: unit labels (prompts, personas, layer indices, coefficients...).
        internal, behavioural: the paired measurements (read-only float arrays).
        correlation: rank correlation :class:`Estimate` (bootstrap CI, permutation p), or
            None when undefined (then ``verdict`` is "inconclusive" and ``reason`` says why).
        kappa: Cohen's kappa between the binarised measurements (thresholds, or already 0/1),
            oriented so that positive kappa means agreement in the expected direction; None
            when not computed (``notes`` says why).
        verdict: "agree", "disagree" or "inconclusive"; ``reason`` is the one-line why.
    """

    units: tuple[Any, ...]
    internal: np.ndarray
    behavioural: np.ndarray
    internal_name: str
    behavioural_name: str
    unit_name: str
    method: str
    correlation: Estimate | None
    kappa: Estimate | None
    verdict: str
    reason: str
    expected_sign: int
    confidence: float
    null_band: float
    min_units: int
    threshold_internal: float | None
    threshold_behavioural: float | None
    seed: int
    provenance: Provenance = field(default_factory=Provenance)
    notes: tuple[str, ...] = ()

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_measurements(
        cls,
        units: Sequence[Any],
        internal: Sequence[float],
        behavioural: Sequence[float],
        *,
        internal_name: str = "internal",
        behavioural_name: str = "behavioural",
        unit_name: str = "unit",
        method: str = "spearman",
        threshold_internal: float | None = None,
        threshold_behavioural: float | None = None,
        confidence: float = 0.95,
        seed: int = 0,
        provenance: Provenance | None = None,
        expected_sign: int = +1,
        null_band: float = DEFAULT_NULL_BAND,
        min_units: int = DEFAULT_MIN_UNITS,
        n_resamples: int = 2000,
        n_permutations: int = 10000,
    ) -> "CrossCheck":
        """Pair the measurements unit by unit and compute the cross-check.

        Args:
            units: one label per unit; must be unique (aggregate repeated generations per
                prompt first, e.g. with a scorer's per-prompt mean: duplicated units would be
                pseudo-replication).
            internal, behavioural: one value per unit, in the order of ``units``.
            method: "spearman" (default) or "kendall" (tau-b; better behaved with many ties
                and small n, O(n^2) per resample).
            threshold_internal, threshold_behavioural: binarise with ``value >= threshold``
                for Cohen's kappa. A measurement already in {0, 1} needs no threshold.
            confidence: CI coverage and 1 - alpha of the permutation test.
            seed: seed of the bootstrap and permutations (recorded).
            provenance: where the measurements came from; ``data_hash`` (of units and both
                measurements) and ``seed`` are filled in when missing.
            expected_sign: +1 if the claim predicts that the measurements rise together,
                -1 if one should fall as the other rises.
            null_band: half-width b of the "negligible association" band (see module doc).
            min_units: fewest units for a non-inconclusive verdict.
        """
        if method not in _METHODS:
            raise StatsError(f"method must be one of {sorted(_METHODS)}; got {method!r}.")
        if expected_sign not in (+1, -1):
            raise StatsError(f"expected_sign must be +1 or -1; got {expected_sign!r}.")
        if not 0.0 <= null_band < 1.0:
            raise StatsError(f"null_band must be in [0, 1); got {null_band}.")
        if isinstance(min_units, bool) or not isinstance(min_units, int) or min_units < stats.MIN_CORRELATION_UNITS:
            raise StatsError(f"min_units must be an integer >= {stats.MIN_CORRELATION_UNITS}; got {min_units!r}.")
        if len({internal_name, behavioural_name, unit_name}) < 3:
            raise StatsError(
                "internal_name, behavioural_name and unit_name must differ (they become "
                f"column names); got {internal_name!r}, {behavioural_name!r}, {unit_name!r}."
            )
        confidence = stats._check_confidence(confidence)
        units_t = tuple(units)
        x = stats._float_1d(internal, internal_name, allow_inf=True)
        y = stats._float_1d(behavioural, behavioural_name, allow_inf=True)
        n = stats._check_same_length(
            **{"units": np.empty(len(units_t)), f"internal ({internal_name})": x, f"behavioural ({behavioural_name})": y}
        )
        seen: dict[Any, int] = {}
        dups = []
        for u in units_t:
            seen[u] = seen.get(u, 0) + 1
            if seen[u] == 2:
                dups.append(u)
        if dups:
            raise StatsError(
                f"units must be unique; {len(dups)} repeat (e.g. {dups[:3]!r}). Aggregate "
                f"repeated measurements per {unit_name} first (bootstrap over {unit_name}s, not "
                f"over repeats)."
            )

        prov = provenance if provenance is not None else Provenance()
        prov = prov.replace(
            data_hash=prov.data_hash or data_hash(list(map(str, units_t)), x, y),
            seed=prov.seed if prov.seed is not None else seed,
        )
        alpha = 1.0 - confidence
        label, fn = _METHODS[method]
        notes: list[str] = []

        # --- correlation and verdict ---------------------------------------------------------
        correlation: Estimate | None = None
        if n < min_units:
            verdict = "inconclusive"
            reason = (
                f"only {n} {unit_name}s; a verdict needs at least min_units={min_units} "
                f"(bootstrap CIs of rank correlations are unreliable below that)"
            )
        else:
            constant = [nm for nm, a in ((internal_name, x), (behavioural_name, y)) if np.all(a == a[0])]
            if constant:
                verdict = "inconclusive"
                reason = (
                    f"{label} undefined: {' and '.join(constant)} "
                    f"{'is' if len(constant) == 1 else 'are'} constant across the {n} {unit_name}s"
                )
            else:
                try:
                    correlation = fn(
                        x, y, confidence=confidence, n_resamples=n_resamples,
                        n_permutations=n_permutations, seed=seed,
                    )
                except StatsError as e:
                    # e.g. heavy ties: too many bootstrap resamples with a constant measurement. The
                    # interval is undefined, so no verdict: say why instead of failing the caller.
                    correlation = None
                    verdict, reason = "inconclusive", f"{label} interval undefined: {e}"
                else:
                    verdict, reason = _verdict(correlation, expected_sign, null_band, alpha, n, unit_name)

        # --- kappa ------------------------------------------------------------------------------
        kappa = None
        bx = _binarise(x, threshold_internal, internal_name, notes)
        by = _binarise(y, threshold_behavioural, behavioural_name, notes)
        if bx is not None and by is not None:
            if expected_sign < 0:
                by = 1 - by
            try:
                kappa = stats.cohens_kappa(bx, by, confidence=confidence, n_resamples=n_resamples, seed=seed)
            except StatsError as e:
                notes.append(f"kappa not computed: {e}")
        elif threshold_internal is not None or threshold_behavioural is not None:
            notes.append(
                "kappa not computed: both measurements must be binary (0/1) or have a threshold"
            )

        return cls(
            units=units_t,
            internal=_readonly(x),
            behavioural=_readonly(y),
            internal_name=internal_name,
            behavioural_name=behavioural_name,
            unit_name=unit_name,
            method=method,
            correlation=correlation,
            kappa=kappa,
            verdict=verdict,
            reason=reason,
            expected_sign=expected_sign,
            confidence=confidence,
            null_band=float(null_band),
            min_units=min_units,
            threshold_internal=threshold_internal,
            threshold_behavioural=threshold_behavioural,
            seed=seed,
            provenance=prov,
            notes=tuple(notes),
        )

    @classmethod
    def from_mappings(
        cls, internal: Mapping[Any, float], behavioural: Mapping[Any, float], **kwargs: Any
    ) -> "CrossCheck":
        """Like :meth:`from_measurements`, aligning ``{unit: value}`` mappings by key.

        The key sets must be equal (the error lists what is missing on each side), so a
        misaligned join cannot silently produce a correlation. Units keep ``internal``'s order.
        """
        missing_b = [u for u in internal if u not in behavioural]
        missing_i = [u for u in behavioural if u not in internal]
        if missing_b or missing_i:
            raise StatsError(
                f"the two measurements cover different units: {len(missing_b)} only in internal "
                f"(e.g. {missing_b[:3]!r}), {len(missing_i)} only in behavioural (e.g. "
                f"{missing_i[:3]!r}). Measure both on the same units."
            )
        units = list(internal)
        return cls.from_measurements(
            units, [internal[u] for u in units], [behavioural[u] for u in units], **kwargs
        )

    # ----------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.units)

    @property
    def agrees(self) -> bool:
        return self.verdict == "agree"

    @property
    def method_label(self) -> str:
        return _METHODS[self.method][0]

    def summary(self) -> str:
        """One line: verdict, what was compared, the correlation with CI and p, kappa."""
        head = f"{self.verdict.upper()}: {self.internal_name} vs {self.behavioural_name} over {self.n} {self.unit_name}s"
        if self.correlation is not None:
            c = self.correlation
            d = stats._decimals(c.value, c.ci_low, c.ci_high)
            body = (
                f"{self.method_label} = {c.value:.{d}f} [{c.ci_low:.{d}f}, {c.ci_high:.{d}f}] "
                f"({stats._fmt_conf(c.confidence)} CI), permutation p = {stats._fmt_p(c.p_value)}"
            )
        else:
            body = f"{self.method_label} not computed"
        if self.kappa is not None:
            k = self.kappa
            body += f"; kappa = {k.value:.2f} [{k.ci_low:.2f}, {k.ci_high:.2f}]"
        return f"{head}: {body}; {self.reason}"

    def __str__(self) -> str:
        return self.summary()

    def to_dataframe(self) -> "Any":
        """One row per unit: unit, both measurements, their average ranks, binarised values
        when kappa was computed."""
        import pandas as pd

        df = pd.DataFrame(
            {
                self.unit_name: list(self.units),
                self.internal_name: self.internal,
                self.behavioural_name: self.behavioural,
                f"{self.internal_name}_rank": stats._rankdata(self.internal),
                f"{self.behavioural_name}_rank": stats._rankdata(self.behavioural),
            }
        )
        if self.kappa is not None:
            df[f"{self.internal_name}_binary"] = _binarise(self.internal, self.threshold_internal, "", [])
            df[f"{self.behavioural_name}_binary"] = _binarise(self.behavioural, self.threshold_behavioural, "", [])
        return df

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["n"] = self.n
        d["summary"] = self.summary()
        return to_jsonable(d)


def _binarise(a: np.ndarray, threshold: float | None, name: str, notes: list[str]) -> np.ndarray | None:
    if threshold is not None:
        if not math.isfinite(float(threshold)):
            raise StatsError(f"threshold for {name} must be a finite number; got {threshold!r}.")
        return (a >= threshold).astype(int)
    if _is_binary(a):
        return a.astype(int)
    return None


def _verdict(
    c: Estimate, expected_sign: int, band: float, alpha: float, n: int, unit_name: str
) -> tuple[str, str]:
    p = c.p_value if c.p_value is not None else 1.0
    a = f"{alpha:.3g}"
    if -band < c.ci_low and c.ci_high < band:
        return "disagree", f"negligible association: the CI lies within ±{band:g} (null_band)"
    pos, neg = c.ci_low > 0, c.ci_high < 0
    expected, opposite = (pos, neg) if expected_sign > 0 else (neg, pos)
    sign_word = "positive" if expected_sign > 0 else "negative"
    if (expected or opposite) and p >= alpha:
        return "inconclusive", (
            f"the CI excludes 0 but the permutation p >= {a}; too few {unit_name}s for a "
            f"reliable verdict"
        )
    if expected:
        return "agree", f"the CI excludes 0 with the expected {sign_word} sign and p < {a}"
    if opposite:
        return "disagree", f"opposite sign: the CI excludes 0 on the wrong side ({sign_word} expected), p < {a}"
    return "inconclusive", (
        f"the CI includes 0 and extends beyond ±{band:g}: neither agreement nor a negligible "
        f"association is established with n={n}; more {unit_name}s needed"
    )
