"""One plot function per steering result: ``plot_x(result, ax=None) -> Figure``.

Figures are built with ``matplotlib.figure.Figure`` (never pyplot): nothing is shown, no backend
is switched, nothing global changes, safe in batch jobs; a notebook displays the returned Figure.
matplotlib is imported when a plot is made, not when this module is imported. Error bars and
bands are the results' confidence intervals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_vector", "plot_sweep", "plot_generation_sweep", "plot_residual_norms", "plot_strength_match",
           "plot_refusal_direction", "plot_persona_vectors", "plot_persona_comparison", "plot_steering_sweep"]


def _fig(ax: "Axes | None", figsize=(5.5, 4.0), n: int = 1):
    if ax is not None:
        return ax.figure, [ax]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(figsize[0] * n, figsize[1]), layout="constrained")
    return fig, [fig.add_subplot(1, n, i + 1) for i in range(n)]


def _band(ax, x, ests, label, style="-", colour=None):
    v = np.array([e.value for e in ests])
    lo = np.array([e.ci_low for e in ests])
    hi = np.array([e.ci_high for e in ests])
    line, = ax.plot(x, v, style, marker="o", ms=3, label=label, color=colour)
    ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
    return line


def plot_vector(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Norm of a SteeringVector at each layer."""
    fig, (ax,) = _fig(ax)
    sites = result.sites
    ax.plot([s.layer for s in sites], [float(result.vectors[s].norm()) for s in sites], marker="o")
    ax.set_xlabel("layer")
    ax.set_ylabel("vector norm")
    ax.set_title(f"{result.meta.get('name') or result.method} ({result.provenance.model})", fontsize=9)
    return fig


def plot_sweep(result: Any, ax: "Axes | None" = None) -> "Figure":
    """p(matching) vs multiplier at each behaviour's best layer (random control dashed), CI bands."""
    bs = result.behaviours
    fig, axes = _fig(ax, n=1 if ax is not None else len(bs))
    for i, b in enumerate(bs):
        a = axes[min(i, len(axes) - 1)]
        L = result.best_layer(b)
        ms = sorted(result.multipliers)
        _band(a, ms, [result.estimate(b, L, m) for m in ms], f"{b}: layer {L}")
        if result.control:
            _band(a, ms, [result.estimate(b, L, m, "random") for m in ms], f"{b}: random, layer {L}", "--")
        a.axhline(0.5, color="0.6", lw=0.8, ls=":")
        a.set_xlabel(f"multiplier ({result.scale}, positions={result.positions})")
        a.set_ylabel("p(answer matching behaviour)")
        a.set_ylim(0, 1)
        a.legend(fontsize=7)
    fig.suptitle("CAA sweep (best layer selected on " + result.selection_on.replace("_", " ") + ")", fontsize=9)
    return fig


def plot_generation_sweep(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Score vs coefficient per layer (random control dashed)."""
    fig, (ax,) = _fig(ax)
    cs = sorted(result.coefficients)
    for L in result.layers:
        line = _band(ax, cs, [result.estimate(L, c) for c in cs], f"layer {L}")
        if result.control:
            _band(ax, cs, [result.estimate(L, c, "random") for c in cs], f"layer {L} random", "--", line.get_color())
    ax.set_xlabel(f"coefficient ({result.scale}, positions={result.positions})")
    ax.set_ylabel(result.settings.get("scorer", "score"))
    ax.legend(fontsize=7)
    return fig


def plot_residual_norms(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Mean residual norm per layer with its CI."""
    fig, (ax,) = _fig(ax)
    sites = sorted(result.estimates)
    _band(ax, [s.layer for s in sites], [result.estimates[s] for s in sites], "mean residual norm")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"mean ||h|| (tokens after the first {result.skip_first})")
    return fig


def plot_strength_match(result: Any, ax: "Axes | None" = None) -> "Figure":
    """The measure vs the added norm for each vector (bisection points), the target, the matches."""
    fig, (ax,) = _fig(ax)
    for r in result.rows:
        pts = sorted(result.curves.get(r["label"], []))
        if pts:
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=r["label"])
            ax.errorbar([r["norm"]], [r["achieved"].value],
                        yerr=[[r["achieved"].value - r["achieved"].ci_low], [r["achieved"].ci_high - r["achieved"].value]],
                        fmt="o", color=line.get_color())
    ax.axhline(result.target, color="0.3", ls="--", lw=0.8, label="target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("norm of the added vector")
    ax.set_ylabel(result.measure)
    ax.legend(fontsize=7)
    return fig


def plot_refusal_direction(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Bypass and induce scores per layer at the selected position (selected layer marked)."""
    fig, (ax,) = _fig(ax)
    rows = sorted((s for s in result.scores if s["position"] == result.position), key=lambda s: s["layer"])
    if rows:
        Ls = [s["layer"] for s in rows]
        _band(ax, Ls, [s["bypass"] for s in rows], "bypass (harmful, ablated)")
        _band(ax, Ls, [s["induce"] for s in rows], "induce (harmless, added)")
    if result.baseline:
        ax.axhline(result.baseline["harmful"].value, color="C3", ls=":", lw=0.8, label="harmful, unsteered")
        ax.axhline(result.baseline["harmless"].value, color="C2", ls=":", lw=0.8, label="harmless, unsteered")
    ax.axvline(result.layer, color="0.3", lw=0.8)
    ax.set_xlabel(f"layer (position {result.position})")
    ax.set_ylabel("refusal log-odds")
    ax.legend(fontsize=7)
    return fig


def plot_persona_vectors(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Persona vector norms per layer, one line per persona."""
    fig, (ax,) = _fig(ax)
    for name, v in result.vectors.items():
        sites = v.sites
        ax.plot([s.layer for s in sites], [float(v.vectors[s].norm()) for s in sites], marker=".", label=name)
    ax.set_xlabel("layer")
    ax.set_ylabel("norm of mean(high) - mean(low)")
    ax.set_title(f"persona vectors ({result.source} tokens)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return fig


def plot_persona_comparison(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Per scorer: each persona's shift from baseline under the prompt (x) and under steering (y),
    with CIs; the title gives Spearman's rho across personas with its CI."""
    fig, axes = _fig(ax, (4.5, 4.2), n=1 if ax is not None else len(result.scorers))
    for i, sc in enumerate(result.scorers):
        a = axes[min(i, len(axes) - 1)]
        for p in result.personas:
            if (p, "prompt", sc) not in result.shifts or (p, "steer", sc) not in result.shifts:
                continue
            x, y = result.shifts[(p, "prompt", sc)], result.shifts[(p, "steer", sc)]
            a.errorbar([x.value], [y.value], xerr=[[x.value - x.ci_low], [x.ci_high - x.value]],
                       yerr=[[y.value - y.ci_low], [y.ci_high - y.value]], fmt="o", ms=4, capsize=2)
            a.annotate(p, (x.value, y.value), xytext=(3, 3), textcoords="offset points", fontsize=6)
        a.axhline(0, color="0.7", lw=0.6)
        a.axvline(0, color="0.7", lw=0.6)
        a.set_xlabel(f"{sc}: shift under the system prompt")
        a.set_ylabel(f"{sc}: shift under steering (matched KL)")
        c = result.correlations.get(sc)
        a.set_title(f"Spearman rho = {c.value:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}], p={c.p_value:.2g}"
                    if c is not None else sc, fontsize=8)
    return fig


def plot_steering_sweep(result: Any, ax: "Axes | None" = None) -> "Figure":
    """Each scorer's value against the steering coefficient, one panel per scorer (with ``ax``: the first scorer
    only), with CI bands."""
    scorers = result.scorers[:1] if ax is not None else result.scorers
    fig, axes = _fig(ax, figsize=(4.0, 3.2), n=len(scorers))
    for a, sc in zip(axes, scorers):
        cur = result.curve(sc)
        _band(a, list(cur), list(cur.values()), sc)
        a.axvline(0, color="grey", lw=0.5)
        a.set_xlabel(f"coefficient (x vector, norm {result.vector_norm:.2g}), layer {result.layer}")
        a.set_ylabel(sc)
        a.set_title(f"{result.persona}: {sc}", fontsize=9)
    return fig


# -- the result contract: each result type's plots (workbench.results.plots_for finds them) -------------------
def _register() -> None:
    from workbench.results import register_plot

    register_plot("steering.vector:SteeringVector")(plot_vector)
    register_plot("steering.sweeps:SweepResult")(plot_sweep)
    register_plot("steering.sweeps:GenerationSweepResult")(plot_generation_sweep)
    register_plot("steering.calibration:ResidualNorms")(plot_residual_norms)
    register_plot("steering.calibration:StrengthMatch")(plot_strength_match)
    register_plot("steering.refusal:RefusalDirectionResult")(plot_refusal_direction)
    register_plot("steering.personas:PersonaVectors")(plot_persona_vectors)
    register_plot("steering.compare:PersonaComparison")(plot_persona_comparison)
    register_plot("steering.compare:SteeringSweep")(plot_steering_sweep)


_register()
