"""Probe directions as vectors for steering: :class:`workbench.vectors.DirectionSet`.

A probe's direction reaches the steering package as a plain tensor on disk (safetensors +
JSON metadata; never pickle): the packages do not import each other. The metadata records
the method, the site, the read position, the label names (which way the vector points: from
class 0 towards class 1), each layer's test AUROC with its CI, and the probe's bias so the
scores can be reproduced.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_direction_set", "probes_to_direction_set"]


def probes_to_direction_set(probes: dict, *, method: str, provenance: Any = None, meta: dict | None = None,
                            normalize: bool = True):
    """``{layer or site: LinearProbe}`` -> DirectionSet (unit vectors unless ``normalize=False``,
    which keeps the raw weight / mean-difference vector: CAA-style steering uses the raw mean
    difference)."""
    from workbench.results import Provenance
    from workbench.vectors import DirectionSet

    vecs, bias = {}, {}
    for key, pr in probes.items():
        site = pr.site or f"resid_post.{key}"
        v = pr.direction if normalize else (pr.coef if pr.coef.ndim == 1 else pr.coef[:, -1] - pr.coef[:, 0])
        vecs[site] = np.asarray(v, dtype=np.float32)
        bias[site] = float(pr.intercept) if np.ndim(pr.intercept) == 0 else None
    first = next(iter(probes.values()))
    m = {"label_names": list(first.label_names), "points_towards": first.label_names[-1],
         "normalized": normalize, "bias": bias, **(meta or {})}
    import torch

    return DirectionSet({k: torch.as_tensor(v) for k, v in vecs.items()}, f"probe_{method}",
                        provenance or Provenance(), m)


def to_direction_set(result: Any, *, method: str = "logistic", normalize: bool = True):
    """Directions of a :class:`~probe.sweep.LayerSweepResult` (or any result with ``.sweep``)
    as a DirectionSet, with each layer's main-condition AUROC (value and CI) in the metadata.
    Save with ``.save(path)``; load in steering with ``DirectionSet.load(path)``."""
    sweep = getattr(result, "sweep", result)
    if method not in sweep.probes:
        raise KeyError(f"no {method!r} probes in this result; have {sorted(sweep.probes)}")
    aucs = {}
    try:
        for L, e in zip(sweep.layers, sweep.estimates(method, "main", "auroc")):
            aucs[f"{sweep.site_kind}.{L}"] = {"auroc": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
    except KeyError:
        pass
    meta = {"test_auroc": aucs, "best_layer": sweep.best_layer(method) if aucs else None,
            "read": sweep.provenance.extra.get("read"), "settings": {k: v for k, v in sweep.settings.items()
                                                                     if k in ("C_per_layer", "seed", "n_train")}}
    return probes_to_direction_set(sweep.probes[method], method=method, provenance=sweep.provenance, meta=meta,
                                   normalize=normalize)
