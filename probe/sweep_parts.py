"""A layer sweep computed one layer at a time (one task per layer of a batch job), and put back together.

:func:`sweep_to_dict` / :func:`sweep_from_dict` carry a :class:`~probe.sweep.LayerSweepResult` as JSON (exact:
floats are written with ``repr``), so a task on another process or machine can return it.
:func:`merge_layer_sweeps` joins single-layer sweeps run on the same activations, labels, groups, split and seed
(each with ``headline_ci=ci``: analytic intervals only) into one sweep over all their layers, and then recomputes
the headline numbers the way :func:`~probe.sweep.layer_sweep` does: the best layer's (and, for binary probes, the
chosen layer's) main AUROC, and its held-out-template AUROC where the held-out scores are kept (binary probes),
with a (cluster) bootstrap. The per-layer fits are those of :func:`~probe.sweep.layer_sweep` given that layer alone
(its C chosen per layer, the same split, shuffles and random directions, which depend on the seed only).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.results import Provenance, to_jsonable
from workbench.stats import Estimate

from .probes import LinearProbe
from .sweep import LayerScore, LayerSweepResult, headline_numbers

__all__ = ["sweep_to_dict", "sweep_from_dict", "merge_layer_sweeps"]


def _probe_to_dict(p: LinearProbe) -> dict:
    return {"coef": np.asarray(p.coef, float).tolist(), "intercept": to_jsonable(p.intercept), "method": p.method,
            "layer": p.layer, "site": p.site, "label_names": list(p.label_names), "C": p.C, "meta": to_jsonable(p.meta)}


def _probe_from_dict(d: dict) -> LinearProbe:
    b = d["intercept"]
    return LinearProbe(np.asarray(d["coef"], float), np.asarray(b, float) if isinstance(b, list) else b, d["method"],
                       d["layer"], d["site"], tuple(d["label_names"]), d["C"], dict(d.get("meta") or {}))


def sweep_to_dict(res: LayerSweepResult) -> dict:
    """A JSON-able form of a sweep (every field; :func:`sweep_from_dict` reads it back)."""
    return {
        "layers": [int(L) for L in res.layers], "site_kind": res.site_kind,
        "scores": [{"layer": int(s.layer), "method": s.method, "condition": s.condition, "metric": s.metric,
                    "estimate": s.estimate.to_dict()} for s in res.scores],
        "probes": {m: {str(L): _probe_to_dict(p) for L, p in ps.items()} for m, ps in res.probes.items()},
        "label_names": list(res.label_names), "train": np.asarray(res.train, bool).tolist(),
        "test": np.asarray(res.test, bool).tolist(),
        "test_scores": {m: np.asarray(v, float).tolist() for m, v in res.test_scores.items()},
        "settings": to_jsonable(res.settings), "provenance": res.provenance.to_dict(), "notes": list(res.notes),
        "held_out_scores": {m: np.asarray(v, float).tolist() for m, v in res.held_out_scores.items()},
        "labels": None if res.labels is None else np.asarray(res.labels).astype(int).tolist(),
    }


def sweep_from_dict(d: dict) -> LayerSweepResult:
    p = d["provenance"]
    return LayerSweepResult(
        [int(L) for L in d["layers"]], d["site_kind"],
        [LayerScore(int(s["layer"]), s["method"], s["condition"], s["metric"], Estimate.from_dict(s["estimate"]))
         for s in d["scores"]],
        {m: {int(L): _probe_from_dict(x) for L, x in ps.items()} for m, ps in d["probes"].items()},
        tuple(d["label_names"]), np.asarray(d["train"], bool), np.asarray(d["test"], bool),
        {m: np.asarray(v, float) for m, v in d["test_scores"].items()}, dict(d["settings"]),
        Provenance(p.get("model"), p.get("model_hash"), p.get("data_hash"), p.get("seed"), tuple(p.get("sites") or ()),
                   p.get("extra") or {}, p.get("source_hash")),
        list(d["notes"]), {m: np.asarray(v, float) for m, v in d["held_out_scores"].items()},
        None if d["labels"] is None else np.asarray(d["labels"], np.int64))


def merge_layer_sweeps(parts: Sequence[LayerSweepResult], groups: Sequence[Any], *, headline_ci: str = "bootstrap",
                       n_resamples: int = 2000, seed: int = 0) -> LayerSweepResult:
    """One sweep from single-layer sweeps of the same data (see the module docstring).

    ``parts``: sweeps of one layer each (any order; sorted by layer), made with the same labels, split and seed
    and ``headline_ci`` equal to their ``ci``. ``groups``: the groups given to them (one per example), for the
    bootstrap of the headline numbers."""
    if not parts:
        raise ValueError("merge_layer_sweeps needs at least one single-layer sweep")
    parts = sorted(parts, key=lambda r: r.layers[0])
    first = parts[0]
    for r in parts:
        if len(r.layers) != 1:
            raise ValueError(f"merge_layer_sweeps takes single-layer sweeps; got one over layers {r.layers}")
        if not (np.array_equal(r.train, first.train) and np.array_equal(r.test, first.test)
                and np.array_equal(r.labels, first.labels)):
            raise ValueError(f"the sweep of layer {r.layers[0]} has another split or labels than that of layer "
                             f"{first.layers[0]}; merge only sweeps of the same data and seed")
    layers = [r.layers[0] for r in parts]
    if len(set(layers)) != len(layers):
        raise ValueError(f"merge_layer_sweeps: a layer appears twice in {layers}")
    methods = list(first.test_scores)
    y = np.asarray(first.labels)
    g = np.asarray([str(x) for x in groups], dtype=object)
    if g.size != y.size:
        raise ValueError(f"{g.size} groups for {y.size} examples")
    settings = dict(first.settings)
    settings["C_per_layer"] = [float(r.settings["C_per_layer"][0]) for r in parts]
    for k in ("solver_iterations", "solver_unconverged"):
        if k in settings:
            settings[k] = max(int(r.settings.get(k, 0)) for r in parts)
    if "solver_converged" in settings:
        settings["solver_converged"] = all(bool(r.settings.get("solver_converged", True)) for r in parts)
    if "cv_scores" in settings:
        settings["cv_scores"] = [r.settings["cv_scores"][0] for r in parts]
    settings["headline_ci"] = headline_ci
    settings["merged_from_layers"] = layers
    notes: list[str] = []
    for r in parts:
        notes += [n for n in r.notes if n not in notes]
    prov = first.provenance.replace(sites=tuple(f"{first.site_kind}.{L}" for L in layers))
    res = LayerSweepResult(
        layers, first.site_kind, [s for r in parts for s in r.scores],
        {m: {L: r.probes[m][L] for r in parts for L in r.layers} for m in first.probes}, first.label_names,
        first.train, first.test, {m: np.concatenate([r.test_scores[m] for r in parts]) for m in methods}, settings,
        prov, notes, {m: np.concatenate([r.held_out_scores[m] for r in parts]) for m in first.held_out_scores}, y)
    if headline_ci != first.settings.get("ci"):
        headline_numbers(res, methods, res.held_out_scores, g, headline_ci, n_resamples=n_resamples, seed=seed)
    return res
