"""One plot per result type. Each takes only the result (plus an optional ``ax``) and returns a
:class:`matplotlib.figure.Figure`, built without pyplot (safe under Agg in batch jobs; nothing
is shown, no backend is switched). matplotlib is imported when a plot is made."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["plot_layer_sweep", "plot_token_artifact", "plot_eval_awareness", "plot_prompt_scores",
           "plot_framing_shift", "plot_preference", "plot_layer_transfer", "plot_surface_baseline"]

_COLOURS = {"main": "#1f77b4", "held_out_templates": "#2ca02c", "label_shuffle": "#d62728",
            "random_direction": "#7f7f7f", "with_artifact": "#ff7f0e", "artifact_removed": "#1f77b4",
            "artifact_swapped": "#d62728", "clean": "#2ca02c"}


def _fig_ax(ax: Any, size=(6.5, 4.0)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _band(ax, x, ests, label, colour, ls="-"):
    v = [e.value for e in ests]
    ax.plot(x, v, ls, color=colour, label=label, marker="o", ms=3)
    ax.fill_between(x, [e.ci_low for e in ests], [e.ci_high for e in ests], color=colour, alpha=0.18, lw=0)


def plot_layer_sweep(result: Any, ax: Any = None, *, method: str | None = None, metric: str = "auroc"):
    """AUROC per layer with 95% CI bands: the probe (main split), held-out templates, the
    label-shuffle control and the random-direction baseline; chance at 0.5."""
    fig, ax = _fig_ax(ax)
    method = method or ("logistic" if "logistic" in result.probes else next(iter(result.probes)))
    x = result.layers
    for cond in result.conditions:
        m = "random" if cond == "random_direction" else method
        try:
            ests = result.estimates(m, cond, metric)
        except KeyError:
            continue
        label = "random directions (baseline)" if cond == "random_direction" else cond.replace("_", " ")
        _band(ax, x, ests, label, _COLOURS.get(cond, "k"), "-" if cond == "main" else "--")
    if metric == "auroc":
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(f"layer ({result.site_kind})")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{method} probe: {int(result.train.sum())} train / {int(result.test.sum())} test", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return fig


def plot_token_artifact(result: Any, ax: Any = None):
    """AUROC per layer with the artifact, removed, swapped and clean (CI bars)."""
    fig, ax = _fig_ax(ax)
    x = np.arange(len(result.layers))
    conds = list(result.auroc)
    w = 0.8 / len(conds)
    for j, c in enumerate(conds):
        ests = result.auroc[c]
        v = np.array([e.value for e in ests])
        err = np.array([[e.value - e.ci_low for e in ests], [e.ci_high - e.value for e in ests]])
        ax.bar(x + (j - (len(conds) - 1) / 2) * w, v, w, yerr=err, color=_COLOURS.get(c, None), label=c.replace("_", " "),
               capsize=2)
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    ax.set_xticks(x, [str(L) for L in result.layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("test AUROC")
    ex = [e for e in result.explained if e is not None]
    ax.set_title("token artifact: explained " + ", ".join(f"{e.value:.2f} [{e.ci_low:.2f}, {e.ci_high:.2f}]" for e in ex[:3]),
                 fontsize=9)
    ax.legend(fontsize=7)
    return fig


def plot_eval_awareness(result: Any, ax: Any = None):
    """The evaluation-awareness sweep (see :func:`plot_layer_sweep`) with the scoring layer marked."""
    fig = plot_layer_sweep(result.sweep, ax, method=result.method)
    a = fig.axes[0] if ax is None else ax
    a.axvline(result.layer, color="k", lw=0.8, ls="-.", alpha=0.6)
    if getattr(result, "surface", None) is not None:
        for c, ls in (("main", "-"), ("held_out_templates", "--")):
            if c in result.surface.conditions:
                e = result.surface.auroc(c)
                a.axhline(e.value, color="#9467bd", lw=0.9, ls=ls, label=f"surface baseline, {c.replace('_', ' ')}")
                a.axhspan(e.ci_low, e.ci_high, color="#9467bd", alpha=0.08, lw=0)
        a.legend(fontsize=7, loc="best")
    a.set_title(f"evaluation awareness ({result.dataset}): scoring layer {result.layer}", fontsize=10)
    return fig


def plot_prompt_scores(result: Any, ax: Any = None):
    """Histogram of normalised test-to-deploy scores (0 = typical deploy, 1 = typical test)."""
    fig, ax = _fig_ax(ax)
    ax.hist(result.normalized, bins=min(30, max(5, len(result.normalized) // 3)), color="#1f77b4", alpha=0.8)
    ax.axvline(0, color="#2ca02c", ls="--", lw=0.8, label="deploy mean")
    ax.axvline(1, color="#d62728", ls="--", lw=0.8, label="test mean")
    ax.set_xlabel("normalised probe score")
    ax.set_ylabel("prompts")
    ax.set_title(f"Probe-Rewrite-Evaluate scores, layer {result.layer} (n={len(result.raw)})", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def plot_framing_shift(result: Any, ax: Any = None):
    """Paired scores: each prompt's original vs rewritten score, with the mean shift and its CI."""
    fig, ax = _fig_ax(ax, (5.0, 4.5))
    a, b = result.original.normalized, result.rewritten.normalized
    ax.scatter(a, b, s=14, alpha=0.7, color="#1f77b4")
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.6, ls=":")
    ax.set_xlabel("score, benchmark framing")
    ax.set_ylabel("score, deploy rewrite")
    m = result.mean_shift
    ax.set_title(f"mean shift {m.value:.2f} [{m.ci_low:.2f}, {m.ci_high:.2f}], n={len(a)}", fontsize=10)
    return fig


def plot_preference(result: Any, ax: Any = None):
    """Heatmap of test AUROC per (dimension, layer); the final-norm pseudo-layer is the last column."""
    fig, ax = _fig_ax(ax, (8.0, 3.2))
    dims = result.dimensions
    layers = result.sweeps[dims[0]].layers
    M = np.array([result.sweeps[d].values("logistic", "main", "auroc") for d in dims])
    im = ax.imshow(M, aspect="auto", vmin=0.5, vmax=1.0, cmap="viridis")
    ax.set_yticks(range(len(dims)), dims)
    ax.set_xticks(range(len(layers)), [str(L) if i % 3 == 0 or i == len(layers) - 1 else "" for i, L in enumerate(layers)])
    ax.set_xlabel("layer (last column: after the final norm)")
    fig.colorbar(im, ax=ax, label="test AUROC")
    ax.set_title(f"preference dimensions ({result.split} split)", fontsize=10)
    return fig


def plot_layer_transfer(result: Any, ax: Any = None):
    """Transfer AUROC per layer (95% CI band), the surface baseline's transfer AUROC (line and
    band) and the chosen layer; chance at 0.5."""
    fig, ax = _fig_ax(ax)
    _band(ax, result.layers, result.auroc, "probe trained on the framing set", "#1f77b4")
    if result.surface is not None:
        e = result.surface
        ax.axhline(e.value, color="#9467bd", lw=0.9, label="surface-feature baseline")
        ax.axhspan(e.ci_low, e.ci_high, color="#9467bd", alpha=0.12, lw=0)
    if result.chosen_layer is not None:
        ax.axvline(result.chosen_layer, color="k", lw=0.8, ls="-.", alpha=0.6, label="chosen layer (training set)")
    sel = getattr(result, "selection", None)
    if sel is not None:
        ax.axvline(sel.layer, color="#d62728", lw=0.9, ls="--", alpha=0.7, label="selected on transfer selection part")
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel("transfer AUROC" + (" (report part)" if sel is not None else ""))
    ax.set_title(f"transfer to {result.dataset} ({result.n_pos} vs {result.n_neg})", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return fig


def plot_surface_baseline(result: Any, ax: Any = None):
    """The surface-feature baseline's AUROC per condition (95% CI bars); chance at 0.5."""
    fig, ax = _fig_ax(ax, (4.5, 3.5))
    cs = result.conditions
    ests = [result.auroc(c) for c in cs]
    x = np.arange(len(cs))
    v = np.array([e.value for e in ests])
    ax.errorbar(x, v, yerr=[v - [e.ci_low for e in ests], [e.ci_high for e in ests] - v], fmt="o", color="#9467bd")
    ax.set_xticks(x, [c.replace("_", " ") for c in cs])
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("AUROC")
    ax.set_title("surface-feature baseline", fontsize=10)
    return fig


# -- the result contract: each result type's plots (workbench.results.plots_for finds them) -------------------
def _register() -> None:
    from workbench.results import register_plot

    register_plot("probe.sweep:LayerSweepResult")(plot_layer_sweep)
    register_plot("probe.controls:TokenArtifactResult")(plot_token_artifact)
    register_plot("probe.eval_awareness:EvalAwarenessResult")(plot_eval_awareness)
    register_plot("probe.eval_awareness:PromptScores")(plot_prompt_scores)
    register_plot("probe.eval_awareness:FramingShiftResult")(plot_framing_shift)
    register_plot("probe.preference:PreferenceProbeResult")(plot_preference)
    register_plot("probe.eval_awareness:LayerTransferResult")(plot_layer_transfer)
    register_plot("probe.surface:SurfaceBaselineResult")(plot_surface_baseline)


_register()
