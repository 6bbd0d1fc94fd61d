"""One plot function per circuits result: ``plot_x(result, ax=None) -> matplotlib.figure.Figure``.

No pyplot state is used (figures are built with :class:`matplotlib.figure.Figure`), so these work under
any backend, in notebooks and in batch jobs; nothing is shown. Save with ``fig.savefig(path)`` or
:func:`save_figure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_patching", "plot_lens", "plot_lens_table", "plot_lens_comparison", "plot_head_scores",
           "plot_attribution_agreement", "plot_induction_protocol", "plot_dla", "plot_direct_path", "save_figure"]


def _fig_ax(ax: Any, figsize=(7, 4.5)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, constrained_layout=True)
    return fig, fig.add_subplot(1, 1, 1)


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def _diverging(ax, data: np.ndarray, xlabels, ylabels, title: str, cbar_label: str, vmax: float | None = None):
    v = float(np.nanmax(np.abs(data))) if vmax is None else vmax
    v = v if v > 0 else 1.0
    im = ax.imshow(data, cmap="RdBu_r", vmin=-v, vmax=v, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=10)
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)))
        ax.set_xticklabels(xlabels, rotation=90, fontsize=7)
    if ylabels is not None:
        step = max(1, len(ylabels) // 15)
        ax.set_yticks(range(0, len(ylabels), step))
        ax.set_yticklabels([ylabels[i] for i in range(0, len(ylabels), step)], fontsize=7)
    ax.figure.colorbar(im, ax=ax, label=cbar_label)
    return im


def plot_patching(result: Any, ax: Any = None, normalized: bool = True):
    """Heatmap of a :class:`circuits.PatchingResult`: layer x position (or layer x head; per-position head
    sweeps are summed over positions... no: shown as layer x (pos, head) is unreadable, so the max |effect| over
    heads per (layer, pos) is drawn)."""
    fig, ax = _fig_ax(ax, (8, 5))
    v = (result.normalized if normalized else result.mean - result.corrupt_value.mean()).numpy()
    if result.axes == ("layer", "pos", "head"):
        idx = np.nanargmax(np.abs(v), axis=-1)
        v = np.take_along_axis(v, idx[..., None], -1)[..., 0]
        extra = " (head with the largest |effect| per cell)"
        xl = result.str_tokens if result.str_tokens else None
    elif result.axes == ("layer", "pos"):
        extra = ""
        xl = [f"{t!r}"[1:-1] for t in result.str_tokens] if result.str_tokens else None
    else:
        extra = ""
        xl = [str(h) for h in range(v.shape[1])]
    ylabels = [str(L) for L in range(v.shape[0])]
    what = "normalised (patched - corrupt) / (clean - corrupt)" if normalized else "metric change"
    _diverging(ax, v, xl, ylabels, f"{result.site_kind} patching ({result.direction}){extra}", what,
               vmax=1.0 if normalized else None)
    ax.set_ylabel("layer")
    ax.set_xlabel("position" if "pos" in result.axes else "head")
    return fig


def plot_lens(result: Any, ax: Any = None):
    """Per-layer curves of a :class:`circuits.LensResult`: mean KL to the final distribution (with CI over
    prompts when there are several) and, when targets were given, the target's probability at the last token."""
    fig, ax = _fig_ax(ax, (7, 4))
    x = np.arange(len(result.stages))
    B = result.kl.shape[1]
    if B >= 2:
        est = result.per_stage("kl")
        y = np.array([e.value for e in est])
        ax.fill_between(x, [e.ci_low for e in est], [e.ci_high for e in est], alpha=0.25, color="C0")
    else:
        y = np.nanmean(result.kl[:, 0].numpy(), axis=-1)
    ax.plot(x, y, "o-", color="C0", ms=3, label=f"{result.lens} lens: KL(final || lens)")
    ax.set_xlabel("stage (embed, then resid_post of each layer)")
    ax.set_ylabel("KL (nats)")
    ax.set_xticks(x[::max(1, len(x) // 15)])
    ax.set_xticklabels([result.stages[i] for i in x[::max(1, len(x) // 15)]], fontsize=7)
    if result.target_prob is not None:
        ax2 = ax.twinx()
        last = result.mask.long().cumsum(1).argmax(1)
        p = np.stack([[float(result.target_prob[s, b, last[b]]) for b in range(B)] for s in range(len(result.stages))])
        ax2.plot(x, p.mean(1), "s-", color="C3", ms=3, label="target probability (last token)")
        ax2.set_ylabel("p(target)", color="C3")
        ax2.set_ylim(0, 1)
        ax2.legend(loc="center right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{result.lens} lens ({result.coordinates} coordinates)", fontsize=10)
    return fig


def plot_lens_table(result: Any, ax: Any = None, prompt: int = 0, every: int = 1):
    """The classic logit-lens table for one prompt: top-1 token per (stage, position), coloured by its probability."""
    fig, ax = _fig_ax(ax, (10, 8))
    stages = list(range(0, len(result.stages), every))
    if (len(result.stages) - 1) not in stages:
        stages.append(len(result.stages) - 1)
    cols = [t for t in range(result.mask.shape[1]) if bool(result.mask[prompt, t])]
    P = np.array([[float(result.topk_probs[s, prompt, t, 0]) for t in cols] for s in stages])
    ax.imshow(P, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i, s in enumerate(stages):
        for j, t in enumerate(cols):
            tok = result.topk_strs[s][prompt][t][0] if result.topk_strs else str(int(result.topk_ids[s, prompt, t, 0]))
            ax.text(j, i, repr(tok)[1:-1][:8], ha="center", va="center", fontsize=6,
                    color="white" if P[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([repr(result.str_tokens[prompt][t])[1:-1] for t in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(len(stages)))
    ax.set_yticklabels([result.stages[s] for s in stages], fontsize=7)
    ax.set_xlabel("input token")
    ax.set_ylabel("stage")
    ax.set_title(f"{result.lens} lens: top-1 prediction (colour: its probability)", fontsize=10)
    return fig


def plot_lens_comparison(result: Any, ax: Any = None):
    """Logit vs tuned lens on held-out text (:class:`circuits.LensComparison`): KL per stage with CIs."""
    fig, ax = _fig_ax(ax, (7, 4))
    x = np.arange(len(result.stages))
    for name, est, c in (("logit lens", result.kl_logit, "C0"), ("tuned lens", result.kl_tuned, "C1")):
        y = np.array([e.value for e in est])
        ax.plot(x, y, "o-", ms=3, color=c, label=name)
        ax.fill_between(x, [e.ci_low for e in est], [e.ci_high for e in est], color=c, alpha=0.25)
    ax.set_yscale("symlog", linthresh=0.1)
    step = max(1, len(x) // 15)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([result.stages[i] for i in x[::step]], fontsize=7)
    ax.set_xlabel("stage (embed, then resid_post of each layer)")
    ax.set_ylabel("KL(final || lens), nats")
    ax.set_title(f"held-out text: {result.n_texts} texts, {result.n_tokens} tokens (95% CI over texts)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plot_head_scores(result: Any, kind: str = "induction", measure: str = "target", ax: Any = None):
    """Layer x head grid of a :class:`circuits.HeadScores` score."""
    fig, ax = _fig_ax(ax, (6, max(3, 0.18 * result.get(kind, measure).shape[0] + 1)))
    s = result.get(kind, measure).numpy()
    im = ax.imshow(s, cmap="viridis", vmin=min(0.0, float(s.min())), vmax=max(1.0, float(s.max())), aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(s.shape[1]))
    ax.set_title(f"{kind.replace('_', '-')} score ({measure}; {result.n_seqs} sequences of {result.seq_len} tokens)",
                 fontsize=10)
    fig.colorbar(im, ax=ax)
    if s.size <= 64:
        for i in range(s.shape[0]):
            for j in range(s.shape[1]):
                ax.text(j, i, f"{s[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if s[i, j] > 0.6 else "white")
    return fig


def plot_attribution_agreement(attribution: Any, exact: Any, report: Any = None, ax: Any = None):
    """Scatter of attribution estimates against exact patching effects over the same nodes."""
    fig, ax = _fig_ax(ax, (5, 5))
    base = exact.corrupt_value if exact.direction == "denoise" else exact.clean_value
    ex = (exact.values - base).mean(-1).reshape(-1).numpy()
    at = attribution.mean.reshape(-1).numpy()
    ax.scatter(ex, at, s=10, alpha=0.7)
    lim = float(max(np.abs(ex).max(), np.abs(at).max())) * 1.05 or 1.0
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("exact patching effect (patched - base)")
    ax.set_ylabel(f"{attribution.method.get('name', 'AtP')} estimate")
    title = f"{attribution.node_kind} nodes ({attribution.direction})"
    if report is not None:
        s, r = report.spearman, report.recall_at_k
        title += f"\nSpearman {s.value:.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}], top-{report.k} recall {r.value:.2f}"
    ax.set_title(title, fontsize=9)
    return fig


def plot_induction_protocol(result: Any, ax: Any = None):
    """Loss on the repeated half: clean, targeted ablation and each matched random ablation."""
    fig, ax = _fig_ax(ax, (6, 4))
    rand = result.loss_random.mean(1).numpy()
    ax.bar([0], [float(result.loss_clean.mean())], color="C2", label="no ablation")
    ax.bar([1], [float(result.loss_targeted.mean())], color="C3", label=f"top {result.k_percent}% induction heads")
    ax.bar(np.arange(2, 2 + len(rand)), rand, color="C0", label="matched random heads")
    d = result.targeted_minus_random
    ax.set_title(f"targeted - random: {d.value:.3f} [{d.ci_low:.3f}, {d.ci_high:.3f}] nats ({result.method} ablation)",
                 fontsize=9)
    ax.set_ylabel("loss on the repeated half (nats)")
    ax.set_xticks([])
    ax.legend(fontsize=8)
    return fig


def plot_dla(result: Any, ax: Any = None, top: int = 20):
    """Direct logit attribution: the largest |contributions| (components and heads)."""
    fig, ax = _fig_ax(ax, (7, 5))
    df = result.to_dataframe()
    df = df[~df["component"].isin(["bias", "other"])]
    df = df.reindex(df["mean"].abs().sort_values(ascending=False).index).head(top)
    ax.barh(range(len(df)), df["mean"], color=["C3" if v < 0 else "C0" for v in df["mean"]])
    ax.set_yticks(range(len(df)))
    ax.set_yticklabels(df["component"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"direct contribution to {result.target} (folded coordinates)")
    ax.set_title(f"DLA (decomposition error {result.residual_error:.1e})", fontsize=10)
    return fig


def plot_direct_path(result: Any, ax: Any = None):
    """Direct path patching from one source head: normalised effect into each later head and into the logits."""
    fig, ax = _fig_ax(ax, (6, 4))
    v = result.normalized_to_heads.numpy()
    _diverging(ax, v, [str(h) for h in range(v.shape[1])], [str(L) for L in range(v.shape[0])],
               f"path {result.source[0]}.h{result.source[1]} -> {result.component} of later heads", "normalised effect")
    ax.set_xlabel("destination head")
    ax.set_ylabel("destination layer")
    return fig


# -- the result contract: each result type's plots (workbench.results.plots_for finds them) -------------------
def _register() -> None:
    from workbench.results import register_plot

    register_plot("circuits.patching:PatchingResult")(plot_patching)
    register_plot("circuits.lens:LensResult", "curve")(plot_lens)
    register_plot("circuits.lens:LensResult", "table")(
        lambda r: plot_lens_table(r, every=max(1, round(len(r.stages) / 16))))
    register_plot("circuits.tuned_lens:LensComparison")(plot_lens_comparison)
    for kind in ("induction", "previous_token", "duplicate_token"):
        register_plot("circuits.heads:HeadScores", kind)(lambda r, kind=kind: plot_head_scores(r, kind))
    register_plot("circuits.attribution:AgreementReport")(
        lambda r: plot_attribution_agreement(r.attribution, r.exact, r))
    register_plot("circuits.ablation:InductionProtocolResult")(plot_induction_protocol)
    register_plot("circuits.lens:DLAResult")(plot_dla)
    register_plot("circuits.patching:DirectPathResult")(plot_direct_path)


_register()
