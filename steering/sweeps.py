"""Sweeps over layers x coefficients, with an equal-norm random-direction control.

- :func:`caa_sweep`: the CAA evaluation (Rimsky et al. 2024): for each behaviour, layer and
  multiplier, ``p(matching)`` on held-out A/B items (next-token logits over the two answer
  letters, steering at ``positions``, default every token), and the same with a random direction
  of equal norm at each layer. One unsteered pass over the items serves every layer; each
  coefficient then runs only the layers after the steered one, and only the steered positions
  when they are the last tokens (:class:`~steering.fastpath.ResidualReplay`).
  The best layer is chosen on ``select_items`` when given (held out from the test items; else on
  the test items themselves, which is optimistic and flagged).
- :func:`generation_sweep`: the same grid for free text: batched KV-cached generation under each
  (layer, coefficient), scored by any shared scorer (refusal, ASR, a trait judge).

Every cell is an :class:`~workbench.stats.Estimate` (mean over items, bootstrap CI over items);
effects between coefficients are paired (the same items under both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from workbench.results import Provenance, data_hash
from workbench.stats import mean_estimate, paired_difference

from .fastpath import ResidualReplay
from .operators import check_positions
from .scoring import ab_prompts, p_matching
from .vector import SteeringVector, lookup_norm

if TYPE_CHECKING:
    from workbench.models.protocol import Model

# paired_difference is workbench.stats.paired_difference (bootstrap over items; NaN pairs dropped), re-exported.
__all__ = ["SweepResult", "caa_sweep", "caa_sweep_to_dict", "caa_sweep_from_dict", "merge_caa_sweeps",
           "GenerationSweepResult", "generation_sweep_to_dict", "generation_sweep_from_dict",
           "merge_generation_sweeps", "generation_sweep", "paired_difference",
           "trend"]


def trend(coefs: Sequence[float], values: np.ndarray, *, seed: int = 0):
    """Mean over items of each item's least-squares slope of value on coefficient, with a bootstrap
    CI over items: a per-item monotone trend summary (``values``: ``[n_items, n_coefs]``)."""
    x = np.asarray(coefs, float)
    xc = x - x.mean()
    slopes = (np.asarray(values, float) - np.asarray(values, float).mean(1, keepdims=True)) @ xc / (xc @ xc)
    return mean_estimate(slopes, seed=seed, statistic="slope_per_unit_coefficient")


@dataclass
class SweepResult:
    """p(matching) per (behaviour, layer, multiplier, kind) with per-item values.

    Attributes:
        values: ``{(behaviour, layer, multiplier, kind): per-item p(matching)}``; ``kind`` is
            ``"steer"`` or ``"random"`` (the equal-norm random-direction control). Multiplier 0
            (the unsteered model) is stored under every layer for both kinds.
        selection: ``{behaviour: {layer: per-item effect values on the selection items}}``.
        selection_on: ``"select_items"`` or ``"test_items"`` (optimistic, flagged).
    """

    behaviours: list[str]
    layers: list[int]
    multipliers: list[float]
    values: dict[tuple, np.ndarray]
    site_kind: str = "resid_post"
    positions: Any = "all"
    scale: str = "multiplier"
    control: bool = True
    control_seed: int = 0
    selection: dict = field(default_factory=dict)
    selection_on: str = "test_items"
    vector_norms: dict = field(default_factory=dict)
    seed: int = 0
    provenance: Provenance = field(default_factory=Provenance)

    def estimate(self, behaviour: str, layer: int, multiplier: float, kind: str = "steer"):
        key = (behaviour, layer, float(multiplier), kind)
        if key not in self.values:
            raise KeyError(f"no cell {key}; behaviours {self.behaviours}, layers {self.layers}, "
                           f"multipliers {self.multipliers}, kinds {self.kinds}")
        return mean_estimate(self.values[key], seed=self.seed, statistic="p_matching")

    @property
    def kinds(self) -> list[str]:
        return ["steer", "random"] if self.control else ["steer"]

    def effect(self, behaviour: str, layer: int, kind: str = "steer"):
        """``p(matching | max multiplier) - p(matching | min multiplier)``, paired over items."""
        lo, hi = min(self.multipliers), max(self.multipliers)
        return paired_difference(self.values[(behaviour, layer, float(hi), kind)],
                                 self.values[(behaviour, layer, float(lo), kind)], seed=self.seed,
                                 statistic=f"p_matching({hi:g}) - p_matching({lo:g})")

    def trend(self, behaviour: str, layer: int, kind: str = "steer"):
        """Mean per-item slope of p(matching) on the multiplier (bootstrap CI over items)."""
        ms = sorted(self.multipliers)
        vals = np.stack([self.values[(behaviour, layer, float(m), kind)] for m in ms], axis=1)
        return trend(ms, vals, seed=self.seed)

    def adjacent_differences(self, behaviour: str, layer: int, kind: str = "steer") -> list:
        """Paired differences between consecutive multipliers (Estimates)."""
        ms = sorted(self.multipliers)
        return [paired_difference(self.values[(behaviour, layer, float(b), kind)],
                                  self.values[(behaviour, layer, float(a), kind)], seed=self.seed,
                                  statistic=f"p({b:g}) - p({a:g})") for a, b in zip(ms, ms[1:])]

    def is_monotone(self, behaviour: str, layer: int, kind: str = "steer") -> bool:
        """Whether the point estimates are non-decreasing in the multiplier."""
        ms = sorted(self.multipliers)
        pts = [float(np.mean(self.values[(behaviour, layer, float(m), kind)])) for m in ms]
        return all(b >= a for a, b in zip(pts, pts[1:]))

    def best_layer(self, behaviour: str) -> int:
        """The layer with the largest effect on the selection items (see ``selection_on``)."""
        sel = self.selection.get(behaviour)
        if not sel:
            return max(self.layers, key=lambda L: self.effect(behaviour, L).value)
        return max(sel, key=lambda L: float(np.mean(sel[L])))

    def behaviour_summary(self, behaviour: str) -> dict:
        """Best layer, its curve, effect and trend, and the control's, as Estimates."""
        L = self.best_layer(behaviour)
        ms = sorted(self.multipliers)
        out = {"behaviour": behaviour, "best_layer": L, "selected_on": self.selection_on,
               "curve": {m: self.estimate(behaviour, L, m) for m in ms},
               "effect": self.effect(behaviour, L), "trend": self.trend(behaviour, L),
               "monotone": self.is_monotone(behaviour, L),
               "adjacent": self.adjacent_differences(behaviour, L)}
        if self.control:
            out.update({"control_curve": {m: self.estimate(behaviour, L, m, "random") for m in ms},
                        "control_effect": self.effect(behaviour, L, "random"),
                        "control_trend": self.trend(behaviour, L, "random")})
        return out

    def summary(self) -> str:
        """Per behaviour: the best layer, its effect (max minus min multiplier) and whether the curve is monotone."""
        parts = []
        for b in self.behaviours:
            s = self.behaviour_summary(b)
            ctrl = f", random control {s['control_effect']}" if self.control else ""
            parts.append(f"{b}: best layer {s['best_layer']}, effect {s['effect']}"
                         f"{', monotone' if s['monotone'] else ', not monotone'}{ctrl}")
        return "CAA sweep, p(matching): " + "; ".join(parts)

    def report(self) -> str:
        """A plain-text summary of every behaviour (what the experiments print)."""
        lines = []
        for b in self.behaviours:
            s = self.behaviour_summary(b)
            lines.append(f"{b}: best layer {s['best_layer']} (selected on {s['selected_on']}), positions="
                         f"{self.positions}, scale={self.scale}")
            for m, e in s["curve"].items():
                ctrl = f"   random: {s['control_curve'][m]}" if self.control else ""
                lines.append(f"  x{m:+g}: p(matching) = {e}{ctrl}")
            lines.append(f"  monotone: {s['monotone']}; effect {s['effect']}; trend {s['trend']}")
            if self.control:
                lines.append(f"  random control: effect {s['control_effect']}; trend {s['control_trend']}")
        return "\n".join(lines)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for (b, L, m, kind), v in sorted(self.values.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3], kv[0][2])):
            e = mean_estimate(v, seed=self.seed, statistic="p_matching")
            rows.append({"behaviour": b, "layer": L, "multiplier": m, "kind": kind, "p_matching": e.value,
                         "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
                         "accuracy": float(np.mean(np.asarray(v) > 0.5)), "positions": str(self.positions),
                         "scale": self.scale})
        return pd.DataFrame(rows)


def _as_mapping(x: Any, name: str, default_key: str) -> dict:
    if isinstance(x, Mapping):
        return dict(x)
    return {default_key: x}


def caa_sweep(model: Model, vectors: SteeringVector | Mapping[str, SteeringVector], test_items: Any,
              layers: Sequence[int] | None = None, multipliers: Sequence[float] = (-2, -1, 0, 1, 2), *,
              control: bool = True, select_items: Any = None, positions: Any = "after_instruction",
              scale: str = "multiplier",
              norms: Any = None, system: str | None = None, control_seed: int = 0, seed: int = 0,
              batch_size: int = 16, progress: bool = False) -> SweepResult:
    """Layer x multiplier sweep of CAA vectors on A/B items (see the module docstring).

    Args:
        vectors: one SteeringVector, or ``{behaviour: SteeringVector}``.
        test_items: A/B records, or ``{behaviour: records}`` (same keys as ``vectors``).
        layers: layers to sweep (default: every layer of each vector).
        multipliers: coefficients (0, the unsteered model, is always added).
        control: also sweep a random direction of equal norm at each layer.
        select_items: records (or ``{behaviour: records}``) held out from the test items, on which
            the best layer is chosen (effect = p at max multiplier - p at min multiplier).
        positions: where to steer. ``"after_instruction"`` (default): the tokens after the user's
            question (the chat template's assistant header and the ``"("``), as CAA steers "all
            token positions after the instruction" (Rimsky et al. 2024); ``"all"``: every prompt
            token; ``"generated"``: only the last token; or an index spec.
        scale: ``"multiplier"`` (CAA: alpha * v), ``"unit"``, or ``"relative"`` (with ``norms``).
    """
    if positions != "after_instruction":
        check_positions(positions)
    vecs = _as_mapping(vectors, "vectors", "behaviour")
    items = _as_mapping(test_items, "test_items", "behaviour")
    if set(vecs) != set(items):
        raise ValueError(f"vectors and test_items must have the same behaviours: {sorted(vecs)} vs {sorted(items)}")
    sel_items = _as_mapping(select_items, "select_items", "behaviour") if select_items is not None else {}
    mults = sorted({float(m) for m in multipliers} | {0.0})
    lo, hi = mults[0], mults[-1]
    values: dict[tuple, np.ndarray] = {}
    selection: dict = {}
    norms_out: dict = {}
    all_layers: set[int] = set()
    work = [(b, L) for b in vecs for L in (vecs[b].layers if layers is None else layers)]
    layers_of = {b: [L for bb, L in work if bb == b] for b in vecs}
    if progress:
        from tqdm.auto import tqdm

        work = tqdm(work, desc="caa sweep", unit="layer")
    abs_cache: dict[str, Any] = {}
    replays: dict[str, tuple] = {}  # per behaviour: {site: ResidualReplay} for test and selection items
    for b, L in work:
        vec = vecs[b]
        site = vec.site_at(L)
        all_layers.add(L)
        if b not in abs_cache:
            abs_cache[b] = (ab_prompts(model, items[b], system=system),
                            ab_prompts(model, sel_items[b], system=system) if b in sel_items else None)
        ab, ab_sel = abs_cache[b]
        pos_b = ab.after_instruction(model) if positions == "after_instruction" else positions
        if ab_sel is not None and positions == "after_instruction" and ab_sel.after_instruction(model) != pos_b:
            raise ValueError("selection and test items differ in the tokens after the instruction; use positions='all'")
        kinds = {"steer": vec.vectors[site]}
        if control:
            kinds["random"] = vec.random_like(control_seed).vectors[site]

        def added(v, m):
            from .operators import Add

            ref = lookup_norm(norms, site) if scale == "relative" else None
            return Add(site, v, m, pos_b, scale, ref).added()

        if b not in replays:  # one unsteered pass per item set serves every layer
            sites_b = [vec.site_at(x) for x in layers_of[b]]
            replays[b] = (ResidualReplay.for_sites(model, ab.contexts, sites_b, positions=pos_b, batch_size=batch_size),
                          ResidualReplay.for_sites(model, ab_sel.contexts, sites_b, positions=pos_b,
                                                   batch_size=batch_size) if ab_sel is not None else None)
        rp = replays[b][0][site]
        base = p_matching(rp.last_logits(None), ab)
        for kind, v in kinds.items():
            norms_out[(b, L, kind)] = float(v.norm())
            for m in mults:
                values[(b, L, m, kind)] = base if m == 0 else p_matching(rp.last_logits(added(v, m)), ab)
        if ab_sel is not None:
            rs = replays[b][1][site]
            v = kinds["steer"]
            selection.setdefault(b, {})[L] = (p_matching(rs.last_logits(added(v, hi)), ab_sel)
                                              - p_matching(rs.last_logits(added(v, lo)), ab_sel))
    prov = _caa_provenance(model, items, sel_items, {b: vecs[b].provenance.data_hash for b in vecs},
                           {vecs[b].site_at(L).name for b in vecs for L in all_layers if L in vecs[b].layers},
                           positions=positions, scale=scale, control_seed=control_seed, system=system, seed=seed)
    return SweepResult(list(vecs), sorted(all_layers), mults, values, site_kind=next(iter(vecs.values())).sites[0].kind,
                       positions=positions, scale=scale, control=control, control_seed=control_seed,
                       selection=selection, selection_on="select_items" if sel_items else "test_items",
                       vector_norms=norms_out, seed=seed, provenance=prov)


def _caa_provenance(model: Model, items: Mapping, sel_items: Mapping, vector_hashes: Mapping, sites: Any, *,
                    positions: Any, scale: str, control_seed: int, system: str | None, seed: int) -> Provenance:
    """The provenance of a CAA sweep: the test and selection items and the vectors' data of every behaviour."""
    dh = data_hash({b: list(items[b]) for b in items}, {b: list(sel_items[b]) for b in sel_items},
                   {b: vector_hashes[b] for b in vector_hashes})
    return model.provenance(data_hash=dh, seed=seed, sites=tuple(sorted(sites)),
                            extra={"protocol": "CAA A/B sweep (Rimsky et al. 2024)", "positions": str(positions),
                                   "scale": scale, "control_seed": control_seed, "system": system})


def caa_sweep_to_dict(sw: SweepResult) -> dict:
    """A :class:`SweepResult` as JSON (per-item values as lists of floats, exact for float64; cells in their
    order), for a sweep computed in parts (say one task per (behaviour, layer)) and merged by
    :func:`merge_caa_sweeps`."""
    return {"behaviours": list(sw.behaviours), "layers": [int(L) for L in sw.layers],
            "multipliers": [float(m) for m in sw.multipliers],
            "values": [[b, int(L), float(m), k, np.asarray(v, np.float64).tolist()]
                       for (b, L, m, k), v in sw.values.items()],
            "site_kind": sw.site_kind, "positions": sw.positions, "scale": sw.scale, "control": sw.control,
            "control_seed": sw.control_seed,
            "selection": [[b, int(L), np.asarray(v, np.float64).tolist()] for b, d in sw.selection.items()
                          for L, v in d.items()],
            "selection_on": sw.selection_on,
            "vector_norms": [[b, int(L), k, float(x)] for (b, L, k), x in sw.vector_norms.items()],
            "seed": sw.seed, "provenance": sw.provenance.to_dict()}


def caa_sweep_from_dict(d: Mapping) -> SweepResult:
    """The inverse of :func:`caa_sweep_to_dict`."""
    selection: dict = {}
    for b, L, v in d["selection"]:
        selection.setdefault(b, {})[int(L)] = np.asarray(v, np.float64)
    prov = dict(d["provenance"])
    prov["sites"] = tuple(prov.get("sites", ()))
    positions = d["positions"]
    return SweepResult(list(d["behaviours"]), [int(L) for L in d["layers"]], [float(m) for m in d["multipliers"]],
                       {(b, int(L), float(m), k): np.asarray(v, np.float64) for b, L, m, k, v in d["values"]},
                       site_kind=d["site_kind"], positions=tuple(positions) if isinstance(positions, list) else positions,
                       scale=d["scale"], control=bool(d["control"]), control_seed=int(d["control_seed"]),
                       selection=selection, selection_on=d["selection_on"],
                       vector_norms={(b, int(L), k): float(x) for b, L, k, x in d["vector_norms"]},
                       seed=int(d["seed"]), provenance=Provenance(**prov))


def merge_caa_sweeps(model: Model, parts: Sequence[SweepResult], test_items: Mapping, select_items: Mapping | None,
                     vector_hashes: Mapping[str, str], *, system: str | None = None) -> SweepResult:
    """One :class:`SweepResult` from sweeps of single (behaviour, layer) cells of the same vectors, items and
    settings (:func:`caa_sweep` with one behaviour and one layer each): the cells, the selection effects and the
    vector norms united, in the parts' order (give them behaviour by behaviour, layer by layer, as
    :func:`caa_sweep` visits them), and the provenance of the whole sweep (``test_items`` / ``select_items`` /
    ``vector_hashes``: per behaviour, the items and the vectors' ``provenance.data_hash``). Equal to the one-call
    sweep, cell for cell."""
    if not parts:
        raise ValueError("merge_caa_sweeps needs at least one part")
    p0 = parts[0]
    for p in parts[1:]:
        same = (p.multipliers, p.site_kind, p.positions, p.scale, p.control, p.control_seed, p.seed, p.selection_on)
        if same != (p0.multipliers, p0.site_kind, p0.positions, p0.scale, p0.control, p0.control_seed, p0.seed,
                    p0.selection_on):
            raise ValueError("merge_caa_sweeps: the parts differ in their multipliers or settings (positions, scale, "
                             "control, seed); merge only parts of one sweep")
    behaviours = list(dict.fromkeys(b for p in parts for b in p.behaviours))
    values: dict = {}
    selection: dict = {}
    norms: dict = {}
    sites: set = set()
    for p in parts:
        for k, v in p.values.items():
            if k in values:
                raise ValueError(f"merge_caa_sweeps: cell {k} is in two parts")
            values[k] = v
        for b, d in p.selection.items():
            selection.setdefault(b, {}).update(d)
        norms.update(p.vector_norms)
        sites |= set(p.provenance.sites)
    sel = dict(select_items or {})
    prov = _caa_provenance(model, dict(test_items), sel, dict(vector_hashes), sites, positions=p0.positions,
                           scale=p0.scale, control_seed=p0.control_seed, system=system, seed=p0.seed)
    return SweepResult(behaviours, sorted({int(L) for p in parts for L in p.layers}), list(p0.multipliers), values,
                       site_kind=p0.site_kind, positions=p0.positions, scale=p0.scale, control=p0.control,
                       control_seed=p0.control_seed, selection=selection, selection_on=p0.selection_on,
                       vector_norms=norms, seed=p0.seed, provenance=prov)


@dataclass
class GenerationSweepResult:
    """Scores of generations per (layer, coefficient, kind): a ScoreResult each, plus the texts."""

    layers: list[int]
    coefficients: list[float]
    scores: dict[tuple, Any]
    completions: dict[tuple, list[str]]
    prompts: list[str]
    positions: Any
    scale: str
    control: bool
    settings: dict = field(default_factory=dict)
    seed: int = 0
    provenance: Provenance = field(default_factory=Provenance)

    def estimate(self, layer: int, coefficient: float, kind: str = "steer"):
        return self.scores[(layer, float(coefficient), kind)].aggregate

    def effect(self, layer: int, kind: str = "steer"):
        lo, hi = min(self.coefficients), max(self.coefficients)
        return paired_difference(self.scores[(layer, float(hi), kind)].values,
                                 self.scores[(layer, float(lo), kind)].values, seed=self.seed)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for (L, c, kind), res in sorted(self.scores.items()):
            e = res.aggregate
            rows.append({"layer": L, "coefficient": c, "kind": kind, "scorer": res.scorer, "value": e.value,
                         "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n, "n_unscored": res.n_unscored,
                         "positions": str(self.positions), "scale": self.scale})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Per layer: the score's change from the lowest to the highest coefficient (and the random control's)."""
        lo, hi = min(self.coefficients), max(self.coefficients)
        parts = []
        for L in self.layers:
            s = f"layer {L}: {self.effect(L)}"
            if self.control:
                s += f" (random control {self.effect(L, 'random')})"
            parts.append(s)
        scorer = next(iter(self.scores.values())).scorer if self.scores else "score"
        return (f"{scorer} of {len(self.prompts)} generations, coefficient {hi:g} minus {lo:g}: " + "; ".join(parts))


def generation_sweep_to_dict(gs: GenerationSweepResult) -> dict:
    """A :class:`GenerationSweepResult` as JSON (scores through :meth:`ScoreResult.to_dict`, cells in their order),
    for a sweep computed in parts (say one task per coefficient) and merged by :func:`merge_generation_sweeps`."""
    from workbench.results import to_jsonable

    return {"layers": [int(L) for L in gs.layers], "coefficients": [float(c) for c in gs.coefficients],
            "cells": [[int(L), float(c), k, gs.scores[(L, c, k)].to_dict(), list(gs.completions[(L, c, k)])]
                      for (L, c, k) in gs.scores],
            "prompts": list(gs.prompts), "positions": to_jsonable(gs.positions), "scale": gs.scale,
            "control": gs.control, "settings": to_jsonable(gs.settings), "seed": gs.seed,
            "provenance": gs.provenance.to_dict()}


def generation_sweep_from_dict(d: Mapping) -> GenerationSweepResult:
    """The inverse of :func:`generation_sweep_to_dict`."""
    from workbench.scorers import ScoreResult

    prov = dict(d["provenance"])
    prov["sites"] = tuple(prov.get("sites", ()))
    positions = d["positions"]
    return GenerationSweepResult(
        [int(L) for L in d["layers"]], [float(c) for c in d["coefficients"]],
        {(int(L), float(c), k): ScoreResult.from_dict(sc) for L, c, k, sc, _ in d["cells"]},
        {(int(L), float(c), k): list(t) for L, c, k, _, t in d["cells"]}, list(d["prompts"]),
        tuple(positions) if isinstance(positions, list) else positions, d["scale"], bool(d["control"]),
        dict(d["settings"]), int(d["seed"]), Provenance(**prov))


def merge_generation_sweeps(parts: Sequence[GenerationSweepResult]) -> GenerationSweepResult:
    """One :class:`GenerationSweepResult` from sweeps of the same vector, prompts, layers and settings over some
    coefficients each (:func:`generation_sweep` with a coefficient or a few): the cells united in coefficient
    order (coefficient 0, generated by every part, taken from the first). Equal to the one-call sweep over every
    coefficient, cell for cell (greedy decoding of the same prompts in the same batches). Parts whose prompts,
    layers, settings or provenance differ are refused; the vector itself is known only by its provenance (a
    rescaled copy of it is not told apart)."""
    if not parts:
        raise ValueError("merge_generation_sweeps needs at least one part")
    p0 = parts[0]
    for p in parts[1:]:
        if (p.layers, p.prompts, p.positions, p.scale, p.control, p.settings, p.seed, p.provenance) != \
                (p0.layers, p0.prompts, p0.positions, p0.scale, p0.control, p0.settings, p0.seed, p0.provenance):
            raise ValueError("merge_generation_sweeps: the parts differ in their vector, prompts, layers or settings; "
                             "merge only parts of one sweep")
    coefs = sorted({c for p in parts for c in p.coefficients})
    kinds = ["steer", "random"] if p0.control else ["steer"]
    scores: dict[tuple, Any] = {}
    texts: dict[tuple, list[str]] = {}
    for L in p0.layers:
        for c in coefs:
            for k in kinds:
                src = next(p for p in parts if (L, c, k) in p.scores)
                scores[(L, c, k)], texts[(L, c, k)] = src.scores[(L, c, k)], src.completions[(L, c, k)]
    return GenerationSweepResult(list(p0.layers), coefs, scores, texts, list(p0.prompts), p0.positions, p0.scale,
                                 p0.control, dict(p0.settings), p0.seed, p0.provenance)


def generation_sweep(model: Model, vector: SteeringVector, prompts: Sequence[str], layers: Sequence[int],
                     coefficients: Sequence[float], scorer: Callable[..., Any], *, control: bool = True,
                     positions: Any = "generated", scale: str = "multiplier", norms: Any = None,
                     system: str | None = None, max_new_tokens: int = 48, do_sample: bool = False, seed: int = 0,
                     control_seed: int = 0, batch_size: int = 32, progress: bool = False) -> GenerationSweepResult:
    """Generate under each (layer, coefficient) (batched, KV cache) and score with ``scorer``.

    ``scorer(prompts, completions, provenance=...) -> ScoreResult`` is any shared scorer
    (``RefusalScorer()``, ``ASRScorer()``, ``TraitScorer(judge)``). Coefficient 0 is generated once.
    The default position policy, ``"generated"``, steers the last prompt token and every generated
    token (Chen et al. 2025: "at every decoding step")."""
    from .scoring import generate_and_score

    check_positions(positions)
    coefs = sorted({float(c) for c in coefficients} | {0.0})
    scores: dict[tuple, Any] = {}
    texts: dict[tuple, list[str]] = {}
    base_res, base_gen = generate_and_score(model, prompts, scorer, (), system=system, max_new_tokens=max_new_tokens,
                                            batch_size=batch_size, do_sample=do_sample, seed=seed)
    kinds = {"steer": vector}
    if control:
        kinds["random"] = vector.random_like(control_seed)
    work = [(L, c, k) for L in layers for c in coefs for k in kinds]
    if progress:
        from tqdm.auto import tqdm

        work = tqdm(work, desc="generation sweep", unit="cell")
    for L, c, k in work:
        if c == 0.0:
            scores[(L, c, k)], texts[(L, c, k)] = base_res, base_gen.completions
            continue
        op = kinds[k].at(L, c, positions=positions, scale=scale, norms=norms)
        res, gen = generate_and_score(model, prompts, scorer, [op], system=system, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, do_sample=do_sample, seed=seed)
        scores[(L, c, k)], texts[(L, c, k)] = res, gen.completions
    settings = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, system=system, batch_size=batch_size,
                    scorer=getattr(scorer, "name", type(scorer).__name__))
    prov = model.provenance(data_hash=data_hash(list(prompts), vector.provenance.data_hash), seed=seed,
                            sites=tuple(vector.site_at(L).name for L in layers), extra=settings)
    return GenerationSweepResult(list(layers), coefs, scores, texts, list(prompts), positions, scale, control,
                                 settings, seed, prov)
