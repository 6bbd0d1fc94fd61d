"""Plots of typed results. Each function takes a result (plus an optional ``ax``) and returns
the :class:`matplotlib.figure.Figure`.

Safe under any backend, including Agg in batch jobs: figures are created with
``matplotlib.figure.Figure`` (not pyplot), so nothing is registered with a GUI, nothing is
shown, no global state changes, and nothing leaks when a job makes thousands of plots. In a
notebook the returned Figure displays itself. matplotlib is imported when a plot is made, not
when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from workbench.results import register_plot

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from workbench.crosscheck import CrossCheck
    from workbench.stats import Estimate

__all__ = ["plot_crosscheck", "plot_estimates", "plot_layer_curves", "plot_rank_agreement", "plot_model_table",
           "figure_and_ax", "VERDICT_COLOURS"]

VERDICT_COLOURS = {"agree": "#1a7f37", "disagree": "#cf222e", "inconclusive": "#9a6700"}
_MAX_LABELLED_UNITS = 25


def figure_and_ax(ax: "Axes | None", figsize: tuple[float, float]) -> tuple["Figure", "Axes"]:
    """``(figure, axes)``: ``ax``'s own figure, or a new pyplot-free Figure of ``figsize`` with one Axes (for
    plot functions that draw on a caller's axes or make their own figure)."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def plot_crosscheck(result: "CrossCheck", ax: "Axes | None" = None) -> "Figure":
    """Scatter of the internal vs the behavioural measurement, one point per unit.

    Units are labelled when there are at most 25 of them; thresholds (when given) are drawn
    as dashed lines; the title carries the rank correlation with its CI and permutation p, and
    the verdict in its colour (green agree, red disagree, amber inconclusive).
    """
    fig, ax = figure_and_ax(ax, (5.5, 4.5))
    colour = VERDICT_COLOURS.get(result.verdict, "black")
    x, y = np.asarray(result.internal), np.asarray(result.behavioural)
    ax.scatter(x, y, s=28, color=colour, alpha=0.8, edgecolors="white", linewidths=0.5, zorder=3)
    if result.n <= _MAX_LABELLED_UNITS:
        for u, xi, yi in zip(result.units, x, y):
            ax.annotate(
                str(u), (xi, yi), xytext=(3, 3), textcoords="offset points", fontsize=7,
                color="0.25", zorder=4,
            )
    if result.threshold_internal is not None:
        ax.axvline(result.threshold_internal, color="0.5", ls="--", lw=0.8)
    if result.threshold_behavioural is not None:
        ax.axhline(result.threshold_behavioural, color="0.5", ls="--", lw=0.8)
    ax.set_xlabel(result.internal_name)
    ax.set_ylabel(result.behavioural_name)
    c = result.correlation
    if c is not None:
        sym = "\u03c1" if result.method == "spearman" else "\u03c4b"
        from workbench.stats import _decimals, _fmt_conf, _fmt_p

        d = _decimals(c.value, c.ci_low, c.ci_high)
        stat_line = (
            f"{sym} = {c.value:.{d}f} [{c.ci_low:.{d}f}, {c.ci_high:.{d}f}] "
            f"({_fmt_conf(c.confidence)} CI), p = {_fmt_p(c.p_value)}, n = {result.n}"
        )
    else:
        stat_line = f"{result.method_label} not computed, n = {result.n}"
    if result.kappa is not None:
        stat_line += f", \u03ba = {result.kappa.value:.2f}"
    ax.set_title(f"{result.verdict.upper()}\n{stat_line}", color=colour, fontsize=10)
    ax.annotate(  # the verdict's reason, under the x label (kept inside the layout)
        _wrap(result.reason, 78), xy=(0.0, 0.0), xycoords="axes fraction", xytext=(-30, -36),
        textcoords="offset points", fontsize=7, color="0.35", va="top", ha="left",
    )
    ax.grid(alpha=0.25, zorder=0)
    return fig


def plot_estimates(
    names: Sequence[Any],
    estimates: Sequence["Estimate"],
    ax: "Axes | None" = None,
    *,
    horizontal: bool = False,
    reference: float | None = None,
    title: str | None = None,
    label: str | None = None,
    colors: Sequence[Any] | Any | None = None,
    marker: str = "o",
) -> "Figure":
    """Point estimates with their confidence intervals as error bars.

    Args:
        names: one label per estimate (layers, heads, conditions...). Numeric names are
            plotted at their values (e.g. steering coefficients); others at 0..n-1.
        estimates: :class:`workbench.stats.Estimate` objects (asymmetric CIs are drawn as is).
        ax: draw into this axes (e.g. to overlay two series with ``label=``).
        horizontal: estimates on the x axis, names on the y axis (for long name lists).
        reference: draw a dashed reference line at this value (0 for correlations, 0.5 for
            AUROC, the baseline rate...).
        title, label, colors, marker: cosmetics; ``label`` adds a legend entry.
    """
    if len(names) != len(estimates):
        raise ValueError(f"names and estimates differ in length: {len(names)} vs {len(estimates)}.")
    fig, ax = figure_and_ax(ax, (max(4.0, 0.35 * len(names) + 2), 3.5) if not horizontal else (5.0, max(3.0, 0.3 * len(names) + 1)))
    vals = np.array([e.value for e in estimates], dtype=float)
    lo = np.array([e.ci_low for e in estimates], dtype=float)
    hi = np.array([e.ci_high for e in estimates], dtype=float)
    err = np.vstack([vals - lo, hi - vals])
    numeric = all(isinstance(n, (int, float, np.integer, np.floating)) and not isinstance(n, bool) for n in names)
    pos = np.asarray(names, dtype=float) if numeric else np.arange(len(names), dtype=float)
    kw = dict(fmt=marker, capsize=2.5, elinewidth=1.0, markersize=4, label=label)
    if colors is not None and isinstance(colors, (list, tuple, np.ndarray)):
        for p, v, e0, e1, c in zip(pos, vals, err[0], err[1], colors):
            e = np.array([[e0], [e1]])
            if horizontal:
                ax.errorbar(v, p, xerr=e, color=c, **{**kw, "label": None})
            else:
                ax.errorbar(p, v, yerr=e, color=c, **{**kw, "label": None})
    elif horizontal:
        ax.errorbar(vals, pos, xerr=err, color=colors, **kw)
    else:
        ax.errorbar(pos, vals, yerr=err, color=colors, **kw)
    if reference is not None:
        (ax.axvline if horizontal else ax.axhline)(reference, color="0.5", ls="--", lw=0.8)
    if not numeric:
        if horizontal:
            ax.set_yticks(pos, [str(n) for n in names])
        else:
            ax.set_xticks(pos, [str(n) for n in names], rotation=45 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
    if estimates:
        e0 = estimates[0]
        from workbench.stats import _fmt_conf

        what = e0.statistic or "estimate"
        axis_label = f"{what} ({_fmt_conf(e0.confidence)} CI)"
        (ax.set_xlabel if horizontal else ax.set_ylabel)(axis_label)
    if title:
        ax.set_title(title, fontsize=10)
    if label is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.25)
    return fig


register_plot("workbench.crosscheck:CrossCheck")(plot_crosscheck)


def plot_layer_curves(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Every model's curve against the depth fraction (0 first layer, 1 last), with its CI band."""
    from workbench.comparison import depth_fraction

    fig, ax = figure_and_ax(ax, (6.0, 3.6))
    for m, pts in result.curves.items():
        if not pts:
            continue
        n = result.n_layers[m]
        x = [depth_fraction(L, n) for L, _ in pts]
        ax.plot(x, [e.value for _, e in pts], marker="o", markersize=3, lw=1.2, label=f"{m} ({n} layers)")
        ax.fill_between(x, [e.ci_low for _, e in pts], [e.ci_high for _, e in pts], alpha=0.15)
    if result.reference is not None:
        ax.axhline(result.reference, color="0.5", ls="--", lw=0.8)
    ax.set_xlabel("layer (fraction of depth)")
    ax.set_ylabel(result.metric)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.25)
    return fig


def plot_rank_agreement(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Spearman's rho of every pair of models, per measure, with its CI (pairs without one are left out)."""
    fig, ax = figure_and_ax(ax, (6.0, 0.6 + 0.35 * max(1, sum(len(p) for p in result.pairs.values()))))
    names, ests = [], []
    for measure, pairs in result.pairs.items():
        for a, b, e, _ in pairs:
            if e is not None:
                names.append(f"{measure}: {a} vs {b}")
                ests.append(e)
    if ests:
        plot_estimates(names, ests, ax=ax, horizontal=True, reference=0.0,
                       title=f"{result.unit} rankings: Spearman between models")
    else:
        ax.set_title(f"{result.unit} rankings: no pair of models has 3 common {result.unit}s", fontsize=10)
        ax.set_axis_off()
    return fig


def plot_model_table(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Each estimate column of a :class:`~workbench.comparison.ModelTable`, models side by side with their CIs."""
    from workbench.stats import Estimate

    cols = result.estimate_columns()
    if ax is not None or len(cols) <= 1:
        fig, ax = figure_and_ax(ax, (6.0, 3.2))
        axes = [ax]
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.2 * len(cols), 3.2), layout="constrained")
        axes = list(fig.subplots(1, len(cols), squeeze=False)[0])
    if not cols:
        axes[0].set_title(f"{result.title}: no estimates", fontsize=10)
        axes[0].set_axis_off()
        return fig
    for a, c in zip(axes, cols):
        models = [m for m, r in result.rows.items() if isinstance(r.get(c), Estimate)]
        plot_estimates(models, [result.rows[m][c] for m in models], ax=a, title=c)
    return fig


register_plot("workbench.comparison:LayerCurves")(plot_layer_curves)
register_plot("workbench.comparison:RankAgreement")(plot_rank_agreement)
register_plot("workbench.comparison:ModelTable")(plot_model_table)
