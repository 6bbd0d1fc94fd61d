"""Patching over many counterfactual pairs of different shapes, aggregated per component.

A pair (clean, corrupt) that differs in a social-group cue usually has its own token count, so pairs
cannot share one batched sweep. :func:`pair_patching` runs span-aligned sweeps
(:func:`circuits.patching.patching_sweep` with ``align="spans"``) pair by pair on a fixed set of
*components*, each read as its effect on the metric at the final position:

- ``resid_pre.L@final``: the residual stream entering layer L at the final token;
- ``resid_pre.L@cue``: the same at the last token of the cue (the last token of the first differing region
  in the run patched into, see ``_cue_position``), which carries the group information before later layers
  move it;
- ``attn_out.L@final``, ``mlp_out.L@final``: a layer's attention or MLP output at the final token;
- ``L.hH@final``: head H of layer L (its ``z``) at the final token.

Per pair and component the **effect** is ``patched - base`` in metric units (denoising: clean
activation into the corrupt run, so a positive effect moves the corrupt run toward the clean one).
:class:`PairPatchingResult` aggregates: the normalised effect ``mean effect / mean (clean - corrupt)``
with a bootstrap CI over pairs (the ratio of means, resampled together), the top components chosen on
one subset of pairs and scored on another (so a later correlation is not selected on its own data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from workbench.errors import WorkbenchError
from workbench.results import Provenance, data_hash, to_jsonable

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["PairPatchingResult", "pair_patching", "plot_pair_patching", "COMPONENT_FAMILIES", "PairPatchingError"]

COMPONENT_FAMILIES = ("resid_final", "resid_cue", "layers_final", "heads_final")


class PairPatchingError(WorkbenchError, ValueError):
    pass


@dataclass(frozen=True, eq=False)
class PairPatchingResult:
    """Effects of patching each component in each pair.

    Attributes:
        pairs: pair ids; components: component names (see the module docstring).
        effects: ``[n_pairs, n_components]`` ``patched - base`` (NaN where a component had no aligned partner).
        clean, corrupt: ``[n_pairs]`` the metric on the unpatched runs.
        direction: ``"denoise"`` or ``"noise"``; ``cue_positions``: per pair, the base run's cue position.
    """

    pairs: tuple[str, ...]
    components: tuple[str, ...]
    effects: np.ndarray
    clean: np.ndarray
    corrupt: np.ndarray
    direction: str
    cue_positions: tuple[int, ...]
    metric: str = "metric"
    seconds: float = 0.0
    provenance: Provenance = field(default_factory=Provenance)

    @property
    def gap(self) -> np.ndarray:
        """``clean - corrupt`` per pair (the total effect of the cue)."""
        return self.clean - self.corrupt

    def normalized(self, subset: Sequence[int] | None = None) -> np.ndarray:
        """``mean effect / mean (clean - corrupt)`` per component over ``subset`` of pairs (default all);
        for noising the sign is flipped so that 1 means the component carries the whole effect."""
        idx = np.arange(len(self.pairs)) if subset is None else np.asarray(subset)
        g = float(self.gap[idx].mean())
        if abs(g) < 1e-12:
            raise PairPatchingError("clean and corrupt give the same mean metric: the normalised effect is undefined")
        sign = 1.0 if self.direction == "denoise" else -1.0
        return sign * np.nanmean(self.effects[idx], axis=0) / g

    def confidence_intervals(self, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
                             ) -> tuple[np.ndarray, np.ndarray]:
        """Bootstrap over pairs of the normalised effect (ratio of means, resampled together)."""
        from .patching import cell_bootstrap

        if len(self.pairs) < 2:
            raise PairPatchingError("a confidence interval over pairs needs at least 2 pairs")
        vals = self.corrupt[None, :] + np.nan_to_num(self.effects.T) if self.direction == "denoise" else \
            self.clean[None, :] + np.nan_to_num(self.effects.T)
        lo, hi = cell_bootstrap(vals, self.clean, self.corrupt, n_resamples=n_resamples, confidence=confidence,
                                seed=seed)
        if self.direction == "noise":  # (patched - corrupt)/(clean - corrupt) = 1 + effect/gap; report -effect/gap
            lo, hi = 1 - hi, 1 - lo
        return lo, hi

    def top(self, k: int = 10, subset: Sequence[int] | None = None, family: str | None = None) -> list[int]:
        """Indices of the ``k`` components with the largest |normalised effect| over ``subset`` of pairs
        (optionally only components whose name contains ``family``, e.g. ``".h"`` for heads)."""
        v = np.abs(self.normalized(subset))
        ok = np.array([family is None or family in c for c in self.components]) & np.isfinite(v)
        order = [int(i) for i in np.argsort(-np.where(ok, v, -np.inf)) if ok[i]]
        return order[:k]

    def pair_score(self, components: Sequence[int]) -> np.ndarray:
        """Per pair: the summed |effect| of ``components`` (how much they move in that pair)."""
        return np.nansum(np.abs(self.effects[:, list(components)]), axis=1)

    def summary(self) -> str:
        """Pairs, components, the mean total effect and the components carrying most of it."""
        head = (f"pair patching ({self.direction}, {self.metric}): {len(self.pairs)} pairs x {len(self.components)} "
                f"components; mean clean - corrupt {float(self.gap.mean()):.3g}")
        try:
            norm = self.normalized()
        except PairPatchingError as e:
            return f"{head}; {e}"
        top = ", ".join(f"{self.components[i]} {norm[i]:+.2f}" for i in self.top(3))
        return f"{head}; largest normalised effects: {top}"

    def to_dataframe(self, ci: bool = True, seed: int = 0) -> Any:
        """One row per component: normalised effect (and CI), mean raw effect, how many pairs had it."""
        import pandas as pd

        df = pd.DataFrame({"component": list(self.components), "normalized": self.normalized(),
                           "mean_effect": np.nanmean(self.effects, axis=0),
                           "n_pairs": np.isfinite(self.effects).sum(0)})
        if ci and len(self.pairs) >= 2:
            df["ci_low"], df["ci_high"] = self.confidence_intervals(seed=seed)
        return df

    def to_dict(self) -> dict:
        return to_jsonable({f: getattr(self, f) for f in ("pairs", "components", "effects", "clean", "corrupt",
                                                          "direction", "cue_positions", "metric", "seconds",
                                                          "provenance")})


def _cue_position(alignment: Any, base: str, T: int, max_gap: int = 2) -> int:
    """The last token of the first differing region in the ``base`` run. Spans separated by at most
    ``max_gap`` matching tokens count as one region (a matcher may pair a shared character or sub-word
    inside a swapped word: "dog" / "pony" match at "o"). An insertion with no token in the base run gives
    the token before it."""
    if not alignment.spans:
        return T - 1
    k = 1 if base == "corrupt" else 0
    spans = [sp[k] for sp in alignment.spans]
    start, end = spans[0]
    for s0, s1 in spans[1:]:
        if s0 - end > max_gap:
            break
        end = s1
    return end - 1 if end > start else max(start - 1, 0)


def pair_patching(model: Model, pairs: Sequence[tuple[Any, Any]], metrics: Sequence[Any] | Callable[[int], Any], *,
                  families: Sequence[str] = COMPONENT_FAMILIES, direction: str = "denoise", read_position: int = -1,
                  ids: Sequence[str] | None = None, progress: bool = False, **tokenize_kw: Any) -> PairPatchingResult:
    """Span-aligned patching of each (clean, corrupt) pair on the components of ``families``.

    Args:
        pairs: (clean prompt, corrupt prompt) per pair; token counts may differ.
        metrics: one patching metric per pair (e.g. a :class:`~circuits.metrics.LogitDiff` of that pair's answer
            tokens), or a function ``i -> metric``.
        families: which components (``COMPONENT_FAMILIES``).
        read_position: where the metric reads, counted from the end (``-1``: the last token; ``-2`` to score
            the last token's prediction); "@final" components sit at this position.
        **tokenize_kw: e.g. ``chat=True``.
    """
    import time

    from .alignment import check_aligned_pair
    from .patching import patching_sweep

    t0 = time.time()
    bad = [f for f in families if f not in COMPONENT_FAMILIES]
    if bad:
        raise PairPatchingError(f"unknown component families {bad}; choose from {COMPONENT_FAMILIES}")
    if not pairs:
        raise PairPatchingError("no pairs given")
    if read_position >= 0:
        raise PairPatchingError(f"read_position counts from the end (-1 = the last token); got {read_position}")
    metric_of = metrics if callable(metrics) else (lambda i: metrics[i])
    N, H = model.n_layers, model.facts.n_heads
    comps: list[str] = []
    if "resid_cue" in families:
        comps += [f"resid_pre.{L}@cue" for L in range(N)]
    if "resid_final" in families:
        comps += [f"resid_pre.{L}@final" for L in range(N)]
    if "layers_final" in families:
        comps += [f"attn_out.{L}@final" for L in range(N)] + [f"mlp_out.{L}@final" for L in range(N)]
    if "heads_final" in families:
        comps += [f"{L}.h{h}@final" for L in range(N) for h in range(H)]
    effects = np.full((len(pairs), len(comps)), np.nan)
    clean_v, corrupt_v, cues = np.zeros(len(pairs)), np.zeros(len(pairs)), []
    base_side = "corrupt" if direction == "denoise" else "clean"
    it: Any = range(len(pairs))
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="pair patching", unit="pair")
    for i in it:
        clean, corrupt = pairs[i]
        ct, xt, al = check_aligned_pair(model, clean, corrupt, **tokenize_kw)
        T = (xt if base_side == "corrupt" else ct).shape[1]
        fin = T + read_position
        cue = _cue_position(al[0], base_side, T)
        cues.append(cue)
        kw = dict(metric=metric_of(i), direction=direction, align="spans", read_position=read_position)
        row: dict[str, float] = {}

        def base_of(r):
            return float((r.corrupt_value if direction == "denoise" else r.clean_value)[0])
        if "resid_cue" in families or "resid_final" in families:
            pos = sorted({cue, fin})
            r = patching_sweep(model, ct, xt, "resid_pre", positions=pos, **kw)
            b = base_of(r)
            for L in range(N):
                for j, p in enumerate(pos):
                    v = float(r.values[L, j, 0]) - b
                    if p == cue:
                        row[f"resid_pre.{L}@cue"] = v
                    if p == fin:
                        row[f"resid_pre.{L}@final"] = v
            clean_v[i], corrupt_v[i] = float(r.clean_value[0]), float(r.corrupt_value[0])
        if "layers_final" in families:
            for kind in ("attn_out", "mlp_out"):
                r = patching_sweep(model, ct, xt, kind, positions=[fin], **kw)
                b = base_of(r)
                for L in range(N):
                    row[f"{kind}.{L}@final"] = float(r.values[L, 0, 0]) - b
                clean_v[i], corrupt_v[i] = float(r.clean_value[0]), float(r.corrupt_value[0])
        if "heads_final" in families:
            r = patching_sweep(model, ct, xt, "z", per_position=True, positions=[fin], **kw)
            b = base_of(r)
            for L in range(N):
                for h in range(H):
                    row[f"{L}.h{h}@final"] = float(r.values[L, 0, h, 0]) - b
            clean_v[i], corrupt_v[i] = float(r.clean_value[0]), float(r.corrupt_value[0])
        effects[i] = [row.get(c, np.nan) for c in comps]
    pair_ids = tuple(ids) if ids is not None else tuple(str(i) for i in range(len(pairs)))
    m0 = metric_of(0)
    prov = model.provenance(data_hash=data_hash([list(map(str, p)) for p in pairs]),
                            extra={"method": "pair_patching", "families": list(families), "direction": direction,
                                   "align": "spans"})
    return PairPatchingResult(pair_ids, tuple(comps), effects, clean_v, corrupt_v, direction, tuple(cues),
                              getattr(m0, "name", "metric"), time.time() - t0, prov)


def plot_pair_patching(result: PairPatchingResult) -> Any:
    """Normalised effects by layer (residual at the cue and at the final token, attention and MLP outputs at
    the final token) and a layer x head map of the heads at the final token."""
    from matplotlib.figure import Figure

    norm = result.normalized()
    comp = {c: i for i, c in enumerate(result.components)}
    layers = sorted({int(c.split(".")[1].split("@")[0]) for c in result.components if c.startswith(("resid", "attn", "mlp"))}
                    | {int(c.split(".")[0]) for c in result.components if ".h" in c})
    heads = [c for c in result.components if ".h" in c]
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for name, style in (("resid_pre.{L}@cue", "C0-"), ("resid_pre.{L}@final", "C1-"), ("attn_out.{L}@final", "C2--"),
                        ("mlp_out.{L}@final", "C3--")):
        xs = [L for L in layers if name.format(L=L) in comp]
        if xs:
            ax1.plot(xs, [norm[comp[name.format(L=L)]] for L in xs], style, marker="o", ms=3,
                     label=name.format(L="L"))
    ax1.axhline(0, color="0.5", lw=0.8)
    ax1.set_xlabel("layer")
    ax1.set_ylabel("normalised effect (1 = whole cue effect)")
    ax1.set_title(f"span-aligned patching over {len(result.pairs)} pairs ({result.direction})", fontsize=10)
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.25)
    if heads:
        n_l = max(int(c.split(".")[0]) for c in heads) + 1
        n_h = max(int(c.split(".h")[1].split("@")[0]) for c in heads) + 1
        grid = np.full((n_l, n_h), np.nan)
        for c in heads:
            L, h = int(c.split(".")[0]), int(c.split(".h")[1].split("@")[0])
            grid[L, h] = norm[comp[c]]
        lim = float(np.nanmax(np.abs(grid))) or 1.0
        im = ax2.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        fig.colorbar(im, ax=ax2, shrink=0.8)
        ax2.set_xlabel("head")
        ax2.set_ylabel("layer")
        ax2.set_title("heads (z) at the final token", fontsize=10)
    return fig
