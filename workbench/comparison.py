"""Comparisons across models: the same measurement on several models, side by side.

Typed results (the result contract: ``to_dataframe()``, ``summary()``, ``provenance``, plots registered in
:mod:`workbench.plots`) built from numbers each model's run already produced:

- :class:`LayerCurves`: a per-layer curve (e.g. probe AUROC) of every model, the layer given as a fraction of
  depth (``layer / (n_layers - 1)``, 0 the first layer and 1 the last, as :mod:`workbench.layers` reads
  fractions) since models differ in depth;
- :class:`RankAgreement`: per model, a score per unit (e.g. how much a persona lowers refusals), and between
  every pair of models Spearman's rho over the units both scored (:func:`workbench.stats.spearman`, bootstrap
  CI and permutation p);
- :class:`ModelTable`: named numbers per model (estimates with their intervals, counts, labels) in one table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Mapping

from workbench.results import Provenance
from workbench.stats import Estimate, StatsError

__all__ = ["LayerCurves", "RankAgreement", "ModelTable", "depth_fraction", "rank_agreement"]


def depth_fraction(layer: int, n_layers: int) -> float:
    """``layer`` as a fraction of depth: 0 the first layer, 1 the last (a 1-layer model's only layer is 0)."""
    return layer / (n_layers - 1) if n_layers > 1 else 0.0


@dataclass
class LayerCurves:
    """A per-layer measurement of several models.

    Attributes:
        metric: what is measured (the y axis), e.g. ``"probe AUROC (held-out topics)"``.
        curves: ``{model: [(layer, Estimate), ...]}``.
        n_layers: ``{model: number of layers}`` (for the depth fraction).
        reference: a reference line (e.g. 0.5 for chance AUROC), or None.
    """

    metric: str
    curves: dict[str, list[tuple[int, Estimate]]]
    n_layers: dict[str, int]
    reference: float | None = None
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self) -> Any:
        import pandas as pd

        rows = [{"model": m, "layer": L, "n_layers": self.n_layers[m], "depth": depth_fraction(L, self.n_layers[m]),
                 "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n}
                for m, pts in self.curves.items() for L, e in pts]
        return pd.DataFrame(rows, columns=["model", "layer", "n_layers", "depth", "value", "ci_low", "ci_high", "n"])

    def best(self, model: str) -> tuple[int, Estimate] | None:
        pts = self.curves.get(model) or []
        return max(pts, key=lambda p: p[1].value) if pts else None

    def summary(self) -> str:
        parts = []
        for m in self.curves:
            b = self.best(m)
            if b is not None:
                parts.append(f"{m}: best {b[1].format(3)} at layer {b[0]} of {self.n_layers[m]} "
                             f"(depth {depth_fraction(b[0], self.n_layers[m]):.2f})")
        return f"{self.metric} by depth; " + ("; ".join(parts) if parts else "no model has a curve")


@dataclass
class RankAgreement:
    """Per model a score per unit, under one or more measures; Spearman between every pair of models.

    Attributes:
        unit: what a unit is (``"persona"``).
        scores: ``{measure: {model: {unit: score}}}`` (NaN: not scored).
        pairs: ``{measure: [(model_a, model_b, Estimate | None, note), ...]}``; None with a note where rho is
            undefined (fewer than 3 common units, or a constant score).
    """

    unit: str
    scores: dict[str, dict[str, dict[str, float]]]
    pairs: dict[str, list[tuple[str, str, Estimate | None, str]]]
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self) -> Any:
        """One row per (measure, pair of models): Spearman's rho with its interval and p-value."""
        import pandas as pd

        rows = []
        for measure, pairs in self.pairs.items():
            for a, b, e, note in pairs:
                rows.append({"measure": measure, "model_a": a, "model_b": b, "n": e.n if e else 0,
                             "rho": e.value if e else math.nan, "ci_low": e.ci_low if e else math.nan,
                             "ci_high": e.ci_high if e else math.nan,
                             "p_value": e.p_value if e and e.p_value is not None else math.nan, "note": note})
        return pd.DataFrame(rows, columns=["measure", "model_a", "model_b", "n", "rho", "ci_low", "ci_high",
                                           "p_value", "note"])

    def ranking_table(self) -> Any:
        """One row per (measure, model, unit): the score and its rank within the model (1 = highest)."""
        import pandas as pd

        rows = []
        for measure, by_model in self.scores.items():
            for m, sc in by_model.items():
                finite = sorted((v, u) for u, v in sc.items() if math.isfinite(v))
                rank = {u: len(finite) - i for i, (_, u) in enumerate(finite)}
                for u, v in sc.items():
                    rows.append({"measure": measure, "model": m, self.unit: u, "score": v,
                                 "rank": rank.get(u, math.nan)})
        return pd.DataFrame(rows, columns=["measure", "model", self.unit, "score", "rank"])

    def summary(self) -> str:
        parts = []
        for measure, pairs in self.pairs.items():
            for a, b, e, note in pairs:
                parts.append(f"{measure}, {a} vs {b}: " + (f"rho {e.format(2)}" if e else f"n/a ({note})"))
        return f"{self.unit} rankings across models (Spearman): " + ("; ".join(parts) if parts else "no pair")


def rank_agreement(unit: str, scores: Mapping[str, Mapping[str, Mapping[str, float]]], *, seed: int = 0,
                   n_resamples: int = 2000, provenance: Provenance | None = None) -> RankAgreement:
    """:class:`RankAgreement` of ``scores`` (``{measure: {model: {unit: score}}}``): for every measure and pair
    of models, Spearman's rho (:func:`workbench.stats.spearman`) over the units both scored with a finite value."""
    from workbench.stats import spearman

    pairs: dict[str, list] = {}
    for measure, by_model in scores.items():
        out = []
        for a, b in combinations(list(by_model), 2):
            common = [u for u in by_model[a] if u in by_model[b] and math.isfinite(by_model[a][u])
                      and math.isfinite(by_model[b][u])]
            if len(common) < 3:
                out.append((a, b, None, f"{len(common)} {unit}s scored by both models; Spearman needs 3"))
                continue
            try:
                e = spearman([by_model[a][u] for u in common], [by_model[b][u] for u in common], seed=seed,
                             n_resamples=n_resamples)
                out.append((a, b, e, ""))
            except StatsError as err:
                out.append((a, b, None, str(err)))
        pairs[measure] = out
    return RankAgreement(unit, {k: {m: dict(v) for m, v in d.items()} for k, d in scores.items()}, pairs,
                         provenance or Provenance())


@dataclass
class ModelTable:
    """Named numbers per model, side by side.

    Attributes:
        title: what the table compares.
        rows: ``{model: {column: value}}``; a value is an :class:`~workbench.stats.Estimate` (written as
            ``column``, ``column_ci_low``, ``column_ci_high``), a number, a string or None.
    """

    title: str
    rows: dict[str, dict[str, Any]]
    provenance: Provenance = field(default_factory=Provenance)

    def columns(self) -> list[str]:
        cols: list[str] = []
        for r in self.rows.values():
            cols += [c for c in r if c not in cols]
        return cols

    def estimate_columns(self) -> list[str]:
        return [c for c in self.columns() if any(isinstance(r.get(c), Estimate) for r in self.rows.values())]

    def to_dataframe(self) -> Any:
        import pandas as pd

        est = set(self.estimate_columns())
        recs = []
        for m, r in self.rows.items():
            rec: dict[str, Any] = {"model": m}
            for c in self.columns():
                v = r.get(c)
                if c in est:
                    rec[c] = v.value if isinstance(v, Estimate) else math.nan
                    rec[f"{c}_ci_low"] = v.ci_low if isinstance(v, Estimate) else math.nan
                    rec[f"{c}_ci_high"] = v.ci_high if isinstance(v, Estimate) else math.nan
                else:
                    rec[c] = v
            recs.append(rec)
        return pd.DataFrame(recs)

    def summary(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, Estimate):
                return v.format(2)
            if isinstance(v, float):
                return f"{v:.3g}"
            return "n/a" if v is None else str(v)

        return f"{self.title}: " + "; ".join(
            f"{m}: " + ", ".join(f"{c} {fmt(v)}" for c, v in r.items()) for m, r in self.rows.items())

