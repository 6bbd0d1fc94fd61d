"""Administering a self-report instrument to a model, and the two reliability properties of the scores.

:func:`administer` shows every statement of an :class:`~workbench.instruments.items.Instrument` in each
response format and option order (:mod:`workbench.instruments.formats`) and reads the model's
probabilities over the K answers with the shared K-option scorer (:func:`workbench.scorers.koption_scores`,
next-token logits, no sampling). Per administration: the distribution over the scale values, its expected
value (the raw response), the trait-keyed score (reverse-keyed items flipped), and the format mass (how much
of the next-token distribution falls on the answer labels at all).

Trait scores are means of keyed item scores with a bootstrap CI over items (:meth:`SelfReportResult.trait_scores`).

The two properties Gupta et al. (2023), "Self-Assessment Tests are Unreliable Measures of LLM Personality",
test, per trait and corrected across traits (Holm by default, or Benjamini-Hochberg):

- :func:`order_symmetry`: forward and reversed option order must give mirrored answers. Per item the
  *position bias* is ``(E_forward - E_reversed) / 2`` in scale points, averaged over formats: 0 for a model
  that answers the content, negative for one that prefers the first-listed option (primacy), positive for
  the last-listed (recency). Tested per trait with a sign-flip permutation test over items.
- :func:`format_effect`: the three semantically equivalent formats must give the same trait score. Per trait,
  Friedman's test over items x formats (Kendall's W with a bootstrap CI, within-item permutation p), and
  each pair of formats' mean difference with a sign-flip p.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from workbench.errors import InputError
from workbench.results import Provenance, data_hash
from workbench.stats import Estimate, adjust_pvalues, bootstrap, friedman, paired_mean_difference

from .formats import ORDERS, ResponseFormat, build_item, get_format
from .items import Instrument

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["SelfReportResult", "administer", "OrderSymmetry", "order_symmetry", "FormatEffect", "format_effect",
           "plot_trait_scores", "plot_order_symmetry", "plot_format_effect", "DEFAULT_FORMATS"]

DEFAULT_FORMATS = ("numbered", "lettered", "rating")


@dataclass(frozen=True, eq=False)
class SelfReportResult:
    """Answers to every (item, format, order) administration.

    Attributes:
        instrument: the instrument administered.
        item_index: ``[R]`` index into ``instrument.items`` per administration.
        fmt, order: ``[R]`` format name and option order per administration.
        probs: ``[R, K]`` probabilities over the answers in listed order.
        values: ``[R, K]`` the scale value of each listed answer.
        mass: ``[R]`` next-token probability on the first answer tokens (format adherence).
        condition: a label for the condition (e.g. ``"baseline"``, ``"prompt:high"``).
        provenance: model, weights hash, data hash, seed, options.
    """

    instrument: Instrument
    item_index: np.ndarray
    fmt: np.ndarray
    order: np.ndarray
    probs: np.ndarray
    values: np.ndarray
    mass: np.ndarray
    condition: str = ""
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        for name, dt in (("item_index", int), ("probs", float), ("values", float), ("mass", float)):
            a = np.array(getattr(self, name), dtype=dt, copy=True)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        for name in ("fmt", "order"):
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=object))
        r = self.item_index.size
        if self.probs.shape != self.values.shape or self.probs.shape[0] != r or self.mass.size != r or \
                self.fmt.size != r or self.order.size != r:
            raise InputError(f"SelfReportResult: {r} administrations but probs {self.probs.shape}, values "
                             f"{self.values.shape}, mass {self.mass.shape}, fmt {self.fmt.shape}, order {self.order.shape}")
        if self.probs.shape[1] != self.instrument.k:
            raise InputError(f"probs have {self.probs.shape[1]} options but {self.instrument.name} has a "
                             f"{self.instrument.k}-point scale")

    # ------------------------------------------------------------------ per administration
    @property
    def n(self) -> int:
        return int(self.item_index.size)

    @property
    def expected(self) -> np.ndarray:
        """Expected raw response (scale value) per administration."""
        return (self.probs * self.values).sum(axis=1)

    @property
    def keys(self) -> np.ndarray:
        return np.array([self.instrument.items[i].key for i in self.item_index])

    @property
    def traits_of_rows(self) -> np.ndarray:
        return np.array([self.instrument.items[i].trait for i in self.item_index], dtype=object)

    @property
    def keyed(self) -> np.ndarray:
        """Trait-keyed expected score per administration."""
        return self.instrument.keyed(self.expected, self.keys)

    @property
    def p_by_value(self) -> np.ndarray:
        """``[R, K]`` probability of scale value 1..K (reordered from the listed order)."""
        out = np.zeros_like(self.probs)
        cols = self.values.astype(int) - 1
        np.put_along_axis(out, cols, self.probs, axis=1)
        return out

    @property
    def formats(self) -> list[str]:
        return list(dict.fromkeys(self.fmt.tolist()))

    @property
    def orders(self) -> list[str]:
        return list(dict.fromkeys(self.order.tolist()))

    @property
    def traits(self) -> list[str]:
        present = set(self.traits_of_rows.tolist())
        return [t for t in self.instrument.traits if t in present]

    def to_dataframe(self) -> Any:
        """One row per administration: item, trait, facet, key, format, order, expected, keyed, mass, p(value=v)."""
        import pandas as pd

        its = [self.instrument.items[i] for i in self.item_index]
        df = pd.DataFrame({"condition": self.condition, "item": [it.id for it in its], "text": [it.text for it in its],
                           "trait": [it.trait for it in its], "facet": [it.facet for it in its],
                           "key": [it.key for it in its], "format": self.fmt, "order": self.order,
                           "expected": self.expected, "keyed": self.keyed, "mass": self.mass,
                           "argmax_value": self.values[np.arange(self.n), self.probs.argmax(1)]})
        pv = self.p_by_value
        for v in range(self.instrument.k):
            df[f"p_value_{v + 1}"] = pv[:, v]
        return df

    # ------------------------------------------------------------------ scores
    def item_scores(self, formats: Sequence[str] | None = None, orders: Sequence[str] | None = None) -> Any:
        """Per item: the keyed score averaged over the chosen formats and orders (a DataFrame)."""
        df = self.to_dataframe()
        if formats is not None:
            df = df[df["format"].isin(list(formats))]
        if orders is not None:
            df = df[df["order"].isin(list(orders))]
        return df.groupby(["item", "trait"], sort=False, as_index=False)[["keyed", "expected", "mass"]].mean()

    def trait_estimates(self, *, formats: Sequence[str] | None = None, orders: Sequence[str] | None = None,
                        seed: int = 0) -> dict[str, Estimate]:
        """Trait score per trait (mean keyed item score, averaged over formats and orders first) with a bootstrap
        CI over items."""
        items = self.item_scores(formats, orders)
        out = {}
        for t in self.traits:
            v = items.loc[items["trait"] == t, "keyed"].to_numpy(float)
            out[t] = _mean_estimate(v, seed, f"{t} score")
        return out

    def trait_scores(self, by: Sequence[str] = (), *, seed: int = 0) -> Any:
        """Trait scores with bootstrap CIs over items, overall (``by=()``) or per ``"format"``, ``"order"`` or both."""
        import pandas as pd

        for b in by:
            if b not in ("format", "order"):
                raise InputError(f"by may contain 'format' and 'order'; got {b!r}")
        groups: list[dict] = [{}]
        if "format" in by:
            groups = [{**g, "format": f} for g in groups for f in self.formats]
        if "order" in by:
            groups = [{**g, "order": o} for g in groups for o in self.orders]
        rows = []
        for g in groups:
            est = self.trait_estimates(formats=[g["format"]] if "format" in g else None,
                                       orders=[g["order"]] if "order" in g else None, seed=seed)
            for t, e in est.items():
                rows.append({"condition": self.condition, "trait": t, **g, "score": e.value, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n_items": e.n})
        return pd.DataFrame(rows)

    def mass_estimate(self, seed: int = 0) -> Estimate:
        """Mean format mass over administrations, bootstrap over items (administrations of one item cluster)."""
        return bootstrap(self.mass, seed=seed, groups=self.item_index.tolist())

    def summary(self) -> str:
        est = self.trait_estimates()
        m = self.mass_estimate()
        head = (f"{self.instrument.name}{' [' + self.condition + ']' if self.condition else ''}: "
                f"{len(set(self.item_index.tolist()))} items x {len(self.formats)} formats x {len(self.orders)} orders; "
                f"format mass {m.value:.2f} [{m.ci_low:.2f}, {m.ci_high:.2f}]")
        lines = [head] + [f"  {t}: {e.format(2)}" for t, e in est.items()]
        if m.value < 0.5:
            lines.append("  note: under half the next-token mass is on the answer labels: the model is mostly not "
                         "answering in the format, and the scores describe its preferences among labels it rarely writes")
        return "\n".join(lines)


def _mean_estimate(v: np.ndarray, seed: int, statistic: str) -> Estimate:
    import dataclasses

    v = np.asarray(v, float)
    if v.size >= 2 and float(v.std()) > 0:
        return dataclasses.replace(bootstrap(v, np.mean, seed=seed), statistic=statistic)
    val = float(v.mean())
    return Estimate(val, val, val, n=int(v.size), method="exact (single or constant value)", statistic=statistic,
                    notes=("no spread over items: the interval is degenerate",))


def administer(model: Model, instrument: Instrument, *, formats: Sequence[str | ResponseFormat] = DEFAULT_FORMATS,
               orders: Sequence[str] = ORDERS, system: str | None = None, interventions: Any = None,
               chat: bool | None = None, rule: str = "branch", condition: str = "", batch_size: int = 16,
               seed: int = 0, progress: bool = False) -> SelfReportResult:
    """Show every item in every format and order; read the answer distribution from next-token logits.

    Args:
        formats: built-in format names (``numbered``, ``lettered``, ``rating``) or :class:`ResponseFormat` objects.
        orders: ``forward`` and/or ``reversed`` option order.
        system: a system prompt (a persona); None keeps the chat template's default.
        interventions: active during scoring (e.g. a steering vector), see :func:`workbench.scorers.koption_scores`.
        chat: use the chat template (default: when the model has one). Without it the prompt ends in
            ``"\\nAnswer: "``.
        rule: the K-option rule (``"branch"`` or ``"sequence"``).
        condition: a label stored with the result.
    """
    from workbench.scorers.koption import koption_scores

    fmts = [get_format(f) for f in formats]
    if not fmts:
        raise InputError("administer needs at least one response format")
    names = [f.name for f in fmts]
    if len(set(names)) != len(names):
        raise InputError(f"response format names must be distinct; got {names}")
    for o in orders:
        if o not in ORDERS:
            raise InputError(f"orders must be among {ORDERS}; got {o!r}")
    if len(instrument) < 2:
        raise InputError("administer needs an instrument with at least 2 items")
    chat = model.facts.has_chat_template if chat is None else chat
    idx, fcol, ocol, probs, values, mass = [], [], [], [], [], []
    runs = [(f, o) for f in fmts for o in orders]
    if progress:
        from tqdm.auto import tqdm

        runs = tqdm(runs, desc=f"{instrument.name}{' ' + condition if condition else ''}", unit="format x order")
    for f, o in runs:
        items = [build_item(it.text, instrument.question, instrument.anchors, f, o, {"id": it.id})
                 for it in instrument.items]
        prefix = f.answer_prefix or ("" if chat else "\nAnswer: ")
        r = koption_scores(model, items, rule=rule, chat=chat, system=system if chat else None,
                           assistant_prefix=prefix, interventions=interventions, batch_size=batch_size, seed=seed)
        idx.extend(range(len(instrument)))
        fcol.extend([f.name] * len(instrument))
        ocol.extend([o] * len(instrument))
        probs.append(r.probs)
        values.append(r.option_values)
        mass.append(r.mass)
    from workbench.interventions import as_interventions

    prov = model.provenance(
        data_hash=data_hash(instrument.to_records(), [f.to_dict() for f in fmts], list(orders)), seed=seed,
        extra={"instrument": instrument.name, "formats": names, "orders": list(orders), "system": system,
               "chat": chat, "rule": rule, "condition": condition,
               "interventions": len(as_interventions(interventions))})
    return SelfReportResult(instrument, np.array(idx), np.array(fcol, dtype=object), np.array(ocol, dtype=object),
                            np.concatenate(probs), np.concatenate(values), np.concatenate(mass), condition, prov)


# ---------------------------------------------------------------------------------------------
# Option-order symmetry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderSymmetry:
    """Forward vs reversed option order, per trait (see :func:`order_symmetry`).

    Attributes:
        position_bias: ``{trait: Estimate}`` mean over items of ``(E_forward - E_reversed) / 2`` in scale points
            (negative: prefers the first-listed option), bootstrap CI, sign-flip p.
        p_adjusted: ``{trait: p}`` corrected across traits (``correction``).
        flagged: ``{trait: bool}`` adjusted p < alpha.
        overall: the same over all items.
        trait_shift: ``{trait: Estimate}`` mean keyed forward-minus-reversed difference: how much the trait score
            itself moves with the order (a primacy bias cancels here on a key-balanced trait, so it can look
            harmless on the scores while the answers ignore the content).
        mirror_distance: mean total-variation distance between the forward and reversed answer distributions
            over scale values (0: perfectly mirrored), bootstrap CI over items.
        items: per-item table.
    """

    position_bias: dict[str, Estimate]
    p_adjusted: dict[str, float]
    flagged: dict[str, bool]
    overall: Estimate
    overall_flagged: bool
    trait_shift: dict[str, Estimate]
    mirror_distance: Estimate
    correction: str
    alpha: float
    items: Any = None
    condition: str = ""

    @property
    def symmetric(self) -> bool:
        """No trait flagged and the overall test not significant."""
        return not (any(self.flagged.values()) or self.overall_flagged)

    def to_dataframe(self) -> Any:
        import pandas as pd

        rows = []
        for t, e in list(self.position_bias.items()) + [("(all items)", self.overall)]:
            s = self.trait_shift.get(t)
            rows.append({"condition": self.condition, "trait": t, "position_bias": e.value, "ci_low": e.ci_low,
                         "ci_high": e.ci_high, "p_value": e.p_value,
                         "p_adjusted": self.p_adjusted.get(t, e.p_value),
                         "flagged": self.flagged.get(t, self.overall_flagged), "n_items": e.n,
                         "trait_score_shift": None if s is None else s.value,
                         "trait_score_shift_ci": None if s is None else (s.ci_low, s.ci_high)})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        verdict = "symmetric (no trait flagged)" if self.symmetric else \
            f"ASYMMETRIC: flagged {[t for t, f in self.flagged.items() if f] or ['(all items)']}"
        lines = [f"Option-order symmetry ({self.correction} across {len(self.position_bias)} traits, alpha "
                 f"{self.alpha}): {verdict}",
                 f"  all items: position bias {self.overall.format(3)} scale points (negative = first-listed "
                 f"option preferred); mirror distance {self.mirror_distance.value:.3f}"]
        for t, e in self.position_bias.items():
            lines.append(f"  {t}: {e.format(3)}, p_adj={self.p_adjusted[t]:.3g}{' FLAGGED' if self.flagged[t] else ''}")
        return "\n".join(lines)


def order_symmetry(result: SelfReportResult, *, alpha: float = 0.05, correction: str = "holm", seed: int = 0,
                   n_permutations: int = 10000) -> OrderSymmetry:
    """Test that forward and reversed option orders give mirrored answers, per trait (see the module docstring)."""
    if set(result.orders) != set(ORDERS):
        raise InputError(f"order_symmetry needs both option orders {ORDERS}; the result has {result.orders}. "
                         "Administer with orders=('forward', 'reversed')")
    df = result.to_dataframe()
    pv_cols = [c for c in df.columns if c.startswith("p_value_")]
    fwd = df[df["order"] == "forward"].set_index(["item", "format"])
    rev = df[df["order"] == "reversed"].set_index(["item", "format"])
    common = fwd.index.intersection(rev.index)
    if len(common) == 0:
        raise InputError("no (item, format) was administered in both orders")
    f, r = fwd.loc[common], rev.loc[common]
    per = f[["trait"]].copy()
    per["position_bias"] = (f["expected"].to_numpy() - r["expected"].to_numpy()) / 2
    per["keyed_shift"] = f["keyed"].to_numpy() - r["keyed"].to_numpy()
    per["mirror_tv"] = 0.5 * np.abs(f[pv_cols].to_numpy() - r[pv_cols].to_numpy()).sum(axis=1)
    items = per.reset_index().groupby(["item", "trait"], sort=False, as_index=False)[
        ["position_bias", "keyed_shift", "mirror_tv"]].mean()
    traits = [t for t in result.traits if (items["trait"] == t).sum() >= 2]
    if not traits:
        raise InputError("order_symmetry needs at least 2 items in some trait")
    bias, shift = {}, {}
    for t in traits:
        sub = items[items["trait"] == t]
        bias[t] = paired_mean_difference(sub["position_bias"], seed=seed, n_permutations=n_permutations,
                                         statistic=f"{t} position bias")
        shift[t] = paired_mean_difference(sub["keyed_shift"], seed=seed, n_permutations=n_permutations,
                                          statistic=f"{t} trait score forward - reversed")
    adj = adjust_pvalues([bias[t].p_value for t in traits], correction, alpha)
    overall = paired_mean_difference(items["position_bias"], seed=seed, n_permutations=n_permutations,
                                     statistic="position bias")
    tv = _mean_estimate(items["mirror_tv"].to_numpy(float), seed, "mirror distance")
    flagged = {t: bool(adj.reject[i] and bias[t].excludes(0.0)) for i, t in enumerate(traits)}
    return OrderSymmetry(bias, {t: float(adj.p_adjusted[i]) for i, t in enumerate(traits)}, flagged, overall,
                         bool(overall.p_value < alpha and overall.excludes(0.0)), shift, tv, correction, alpha, items,
                         result.condition)


# ---------------------------------------------------------------------------------------------
# Format effect
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormatEffect:
    """Do semantically equivalent formats give the same trait scores? (see :func:`format_effect`).

    Attributes:
        scores: ``{trait: {format: Estimate}}`` trait score per format (orders averaged), bootstrap CI over items.
        concordance: ``{trait: Estimate}`` Kendall's W over items x formats, bootstrap CI, permutation p (Friedman).
        p_adjusted, flagged: per trait, corrected across traits.
        pairwise: ``{(trait, format_a, format_b): Estimate}`` mean keyed difference a - b, sign-flip p.
        spread: ``{trait: float}`` max - min of the per-format trait scores (scale points).
    """

    formats: list[str]
    scores: dict[str, dict[str, Estimate]]
    concordance: dict[str, Estimate]
    p_adjusted: dict[str, float]
    flagged: dict[str, bool]
    pairwise: dict[tuple[str, str, str], Estimate]
    spread: dict[str, float]
    correction: str
    alpha: float
    condition: str = ""

    @property
    def consistent(self) -> bool:
        return not any(self.flagged.values())

    def to_dataframe(self) -> Any:
        import pandas as pd

        rows = []
        for t, w in self.concordance.items():
            row = {"condition": self.condition, "trait": t, "kendall_w": w.value, "w_ci_low": w.ci_low,
                   "w_ci_high": w.ci_high, "p_value": w.p_value, "p_adjusted": self.p_adjusted[t],
                   "flagged": self.flagged[t], "spread": self.spread[t]}
            for f, e in self.scores[t].items():
                row[f"score_{f}"] = e.value
                row[f"score_{f}_ci"] = (e.ci_low, e.ci_high)
            rows.append(row)
        return pd.DataFrame(rows)

    def pairwise_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"trait": t, "format_a": a, "format_b": b, "difference": e.value, "ci_low": e.ci_low,
                              "ci_high": e.ci_high, "p_value": e.p_value} for (t, a, b), e in self.pairwise.items()])

    def summary(self) -> str:
        verdict = "consistent across formats" if self.consistent else \
            f"FORMAT-SENSITIVE: {[t for t, f in self.flagged.items() if f]}"
        lines = [f"Format effect over {self.formats} ({self.correction} across {len(self.concordance)} traits, "
                 f"alpha {self.alpha}): {verdict}"]
        for t, w in self.concordance.items():
            sc = ", ".join(f"{f} {e.value:.2f}" for f, e in self.scores[t].items())
            lines.append(f"  {t}: scores {sc} (spread {self.spread[t]:.2f}); Kendall's W {w.format(2)}, "
                         f"p_adj={self.p_adjusted[t]:.3g}{' FLAGGED' if self.flagged[t] else ''}")
        return "\n".join(lines)


def format_effect(result: SelfReportResult, *, alpha: float = 0.05, correction: str = "holm", seed: int = 0,
                  n_permutations: int = 5000) -> FormatEffect:
    """Per trait, Friedman's test over items x formats on keyed scores (orders averaged), corrected across traits."""
    fmts = result.formats
    if len(fmts) < 2:
        raise InputError(f"format_effect needs at least 2 response formats; the result has {fmts}")
    df = result.to_dataframe()
    wide = df.groupby(["item", "trait", "format"], sort=False)["keyed"].mean().unstack("format")
    wide = wide[fmts].dropna()
    traits = [t for t in result.traits if (wide.index.get_level_values("trait") == t).sum() >= 2]
    if not traits:
        raise InputError("format_effect needs at least 2 items in some trait administered in every format")
    scores, conc, pair, spread = {}, {}, {}, {}
    for t in traits:
        m = wide.xs(t, level="trait").to_numpy(float)
        scores[t] = {f: _mean_estimate(m[:, j], seed, f"{t} score ({f})") for j, f in enumerate(fmts)}
        spread[t] = float(max(e.value for e in scores[t].values()) - min(e.value for e in scores[t].values()))
        try:
            conc[t] = friedman(m, seed=seed, n_permutations=n_permutations)
        except ValueError:  # every item constant across formats: no format effect at all
            conc[t] = Estimate(0.0, 0.0, 0.0, n=m.shape[0], method="exact (no variation across formats)", p_value=1.0,
                               statistic="kendall_w", notes=("every item scored the same in every format",))
        for a, b in itertools.combinations(range(len(fmts)), 2):
            pair[(t, fmts[a], fmts[b])] = paired_mean_difference(m[:, a], m[:, b], seed=seed,
                                                                 statistic=f"{t}: {fmts[a]} - {fmts[b]}")
    adj = adjust_pvalues([conc[t].p_value for t in traits], correction, alpha)
    return FormatEffect(fmts, scores, conc, {t: float(adj.p_adjusted[i]) for i, t in enumerate(traits)},
                        {t: bool(adj.reject[i]) for i, t in enumerate(traits)}, pair, spread, correction, alpha,
                        result.condition)


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def plot_trait_scores(result: SelfReportResult, ax: Any = None) -> Any:
    """Trait scores per format and order (points with bootstrap CIs) and overall (black)."""
    from workbench.plots import figure_and_ax

    traits = result.traits
    fig, ax = figure_and_ax(ax, (max(5.0, 1.3 * len(traits) + 2), 3.8))
    df = result.trait_scores(by=("format", "order"))
    combos = list(dict.fromkeys(zip(df["format"], df["order"])))
    width = 0.7 / max(1, len(combos))
    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    for j, (f, o) in enumerate(combos):
        sub = df[(df["format"] == f) & (df["order"] == o)].set_index("trait").reindex(traits)
        x = np.arange(len(traits)) - 0.35 + width * (j + 0.5)
        ax.errorbar(x, sub["score"], yerr=[sub["score"] - sub["ci_low"], sub["ci_high"] - sub["score"]], fmt="o",
                    ms=4, capsize=2, color=colours[result.formats.index(f) % len(colours)],
                    mfc="white" if o == "reversed" else None, label=f"{f} / {o}")
    overall = result.trait_estimates()
    ax.errorbar(np.arange(len(traits)), [overall[t].value for t in traits],
                yerr=[[overall[t].value - overall[t].ci_low for t in traits],
                      [overall[t].ci_high - overall[t].value for t in traits]], fmt="s", color="black", ms=5,
                capsize=3, label="all formats and orders")
    k = result.instrument.k
    ax.axhline((k + 1) / 2, color="0.6", ls="--", lw=1)
    ax.set_ylim(1, k)
    ax.set_xticks(np.arange(len(traits)), traits, fontsize=8)
    ax.set_ylabel(f"keyed score (1-{k})")
    ax.set_title(f"{result.instrument.name}{' [' + result.condition + ']' if result.condition else ''}: trait scores",
                 fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return fig


def plot_order_symmetry(result: OrderSymmetry, ax: Any = None) -> Any:
    """Position bias per trait (CI; flagged traits in red) with the all-items estimate."""
    from workbench.plots import figure_and_ax

    names = list(result.position_bias) + ["(all items)"]
    ests = list(result.position_bias.values()) + [result.overall]
    flags = [result.flagged[t] for t in result.position_bias] + [result.overall_flagged]
    fig, ax = figure_and_ax(ax, (max(5.0, 1.1 * len(names) + 2), 3.5))
    x = np.arange(len(names))
    for xi, e, fl in zip(x, ests, flags):
        ax.errorbar([xi], [e.value], yerr=[[e.value - e.ci_low], [e.ci_high - e.value]], fmt="o", capsize=3,
                    color="#cf222e" if fl else "#1a7f37")
    ax.axhline(0, color="0.5", ls="--", lw=1)
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("(E forward - E reversed) / 2  [scale points]")
    ax.set_title(f"Option-order symmetry: {'symmetric' if result.symmetric else 'asymmetric'} "
                 f"(red = flagged, {result.correction})", fontsize=9)
    return fig


def plot_format_effect(result: FormatEffect, ax: Any = None) -> Any:
    """Trait score per format (CIs); flagged traits' labels in red."""
    from workbench.plots import figure_and_ax

    traits = list(result.concordance)
    fig, ax = figure_and_ax(ax, (max(5.0, 1.3 * len(traits) + 2), 3.5))
    width = 0.7 / len(result.formats)
    for j, f in enumerate(result.formats):
        x = np.arange(len(traits)) - 0.35 + width * (j + 0.5)
        es = [result.scores[t][f] for t in traits]
        ax.errorbar(x, [e.value for e in es], yerr=[[e.value - e.ci_low for e in es], [e.ci_high - e.value for e in es]],
                    fmt="o", ms=4, capsize=2, label=f)
    ax.set_xticks(np.arange(len(traits)), traits, fontsize=8)
    for lab, t in zip(ax.get_xticklabels(), traits):
        if result.flagged[t]:
            lab.set_color("#cf222e")
    ax.set_ylabel("keyed trait score")
    ax.set_title(f"Format effect: {'consistent' if result.consistent else 'format-sensitive (red)'}", fontsize=9)
    ax.legend(fontsize=7)
    return fig
