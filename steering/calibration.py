"""Calibration: steering strengths that mean the same thing across layers, vectors and methods.

- :func:`residual_norms`: the mean L2 norm of the residual stream at each layer (per prompt, the
  mean over its tokens after the first ``skip_first``, which in most models carry an outsized
  "attention sink" norm; then the mean over prompts with a bootstrap CI). ``scale="relative"``
  in :class:`~steering.operators.Add` expresses a coefficient as a fraction of it.
- :func:`next_token_kl`: per prompt, ``KL(p_base || p_steered)`` of the next-token distribution at
  the last prompt token (the first response token under a chat template): how far a steering
  operator, or a system prompt (:func:`prompt_kl`), moves the model.
- :func:`match_strength`: for each vector, the norm of the added vector at which the mean KL on
  neutral prompts equals a target (bisection on the norm; "equal KL from the unsteered model"),
  or at which a reference measure shifts by a target amount. Matched strength lets vectors
  (and steering vs prompting, as in Persona Non Grata) be compared at the same strength instead
  of the same multiplier, which means different things for vectors of different norms.

Additive steering at one residual site uses :class:`steering.fastpath.ResidualReplay`, so each
bisection step runs only the layers after the site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch

from workbench.errors import WorkbenchError
from workbench.layers import resolve_layers
from workbench.results import Provenance, data_hash
from workbench.sites import Site, parse_site
from workbench.stats import mean_estimate

from .operators import Add, check_positions, steer
from .record import format_items, normalize_items, pad_left
from .vector import SteeringVector

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = [
    "ResidualNorms", "residual_norms", "next_token_kl", "prompt_kl", "prompt_kls", "kl_divergence", "StrengthMatch",
    "match_strength", "CalibrationError",
]


class CalibrationError(WorkbenchError, ValueError):
    pass


# ------------------------------------------------------------------------------------ norms
@dataclass
class ResidualNorms:
    """Mean residual-stream norm per site (an :class:`~workbench.stats.Estimate` each)."""

    estimates: dict[Site, Any]
    skip_first: int
    n_prompts: int
    provenance: Provenance = field(default_factory=Provenance)

    def norm(self, site: Site | str | int) -> float:
        if isinstance(site, int):
            cands = [s for s in self.estimates if s.layer == site]
            if len(cands) != 1:
                raise CalibrationError(f"no unique site at layer {site} (have {[s.name for s in self.estimates]})")
            return float(self.estimates[cands[0]].value)
        s = parse_site(site)
        if s not in self.estimates:
            raise CalibrationError(
                f"no residual norm for {s.name}; computed for {', '.join(x.name for x in sorted(self.estimates))}. "
                f"Run residual_norms(model, prompts, layers=[{s.layer}], site='{s.kind}')"
            )
        return float(self.estimates[s].value)

    def __getitem__(self, site: Site | str | int) -> float:
        return self.norm(site)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([{"site": s.name, "layer": s.layer, "mean_norm": e.value, "ci_low": e.ci_low,
                              "ci_high": e.ci_high, "n_prompts": e.n} for s, e in sorted(self.estimates.items())])

    def summary(self) -> str:
        """The mean residual norm at the first and last site measured, over how many prompts."""
        sites = sorted(self.estimates)
        ends = [sites[0]] if len(sites) == 1 else [sites[0], sites[-1]]
        return (f"mean residual norm over {self.n_prompts} prompts (first {self.skip_first} token(s) skipped) at "
                f"{len(sites)} sites: " + "; ".join(f"{s.name} {self.estimates[s]}" for s in ends))


def residual_norms(model: Model, prompts: Any = None, layers: Any = None, *, site: str = "resid_post",
                   skip_first: int = 1, chat: bool = True, batch_size: int = 16, seed: int = 0,
                   progress: bool = False) -> ResidualNorms:
    """Mean residual norm at ``site`` of each layer over ``prompts`` (default: the shipped neutral prompts)."""
    from .data import neutral_prompts

    if prompts is None:
        prompts = neutral_prompts()
    layers = resolve_layers(model, layers)
    items = normalize_items(prompts)
    _, ids, _ = format_items(model, items, chat=chat)
    if any(len(x) <= skip_first for x in ids):
        raise CalibrationError(f"every prompt needs more than skip_first={skip_first} tokens")
    sites = [model.check_site(Site(site, L)) for L in layers]
    per: dict[Site, list[float]] = {s: [None] * len(ids) for s in sites}  # type: ignore[list-item]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="residual norms", unit="batch")
    for idx in batches:
        tokens = pad_left(model, [ids[i] for i in idx])
        _, cache = model.run_with_cache(tokens, sites, logits=None)
        m = tokens.attention_mask.bool().clone()
        starts = tokens.starts.tolist()
        for r, st in enumerate(starts):
            m[r, st:st + skip_first] = False
        for s in sites:
            n = cache[s].float().norm(dim=-1)
            mean = (n * m).sum(1) / m.sum(1)
            for j, i in enumerate(idx):
                per[s][i] = float(mean[j])
    est = {s: mean_estimate(v, seed=seed, statistic="mean_residual_norm") for s, v in per.items()}
    prov = model.provenance(data_hash=data_hash([it.to_dict() for it in items], skip_first, chat), seed=seed,
                            sites=tuple(s.name for s in sites))
    return ResidualNorms(est, skip_first, len(ids), prov)


# ------------------------------------------------------------------------------------ KL
def kl_divergence(base_logits: torch.Tensor, logits: torch.Tensor) -> np.ndarray:
    """Per row ``KL(softmax(base) || softmax(logits))`` in nats."""
    lp = torch.log_softmax(base_logits.double(), -1)
    lq = torch.log_softmax(logits.double().to(lp.device), -1)
    return (lp.exp() * (lp - lq)).sum(-1).clamp_min(0).cpu().numpy()


def _last_logits(model: Model, items: Sequence[Any], *, chat: bool, batch_size: int, operators: Sequence[Any] = ()
                 ) -> torch.Tensor:
    _, ids, _ = format_items(model, items, chat=chat)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: list[Any] = [None] * len(ids)
    with steer(model, *operators):
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            lg = model.forward(pad_left(model, [ids[i] for i in idx]), logits="last").float().cpu()
            for j, i in enumerate(idx):
                out[i] = lg[j]
    return torch.stack(out)


def next_token_kl(model: Model, prompts: Any = None, operators: Sequence[Any] = (), *, system: str | None = None,
                  base_system: str | None = None, chat: bool = True, batch_size: int = 16) -> np.ndarray:
    """Per prompt ``KL(p_base || p)`` at the next token, where ``p_base`` is the unsteered model with
    ``base_system`` and ``p`` the model under ``operators`` with ``system``."""
    from .data import neutral_prompts

    prompts = neutral_prompts() if prompts is None else prompts
    base = _last_logits(model, normalize_items(prompts, system=base_system), chat=chat, batch_size=batch_size)
    new = _last_logits(model, normalize_items(prompts, system=system), chat=chat, batch_size=batch_size,
                       operators=operators)
    return kl_divergence(base, new)


def prompt_kls(model: Model, systems: Mapping[str, str], prompts: Any = None, *, base_system: str | None = None,
               batch_size: int = 16) -> dict[str, np.ndarray]:
    """:func:`prompt_kl` for several system prompts (``{name: system}``), sharing the base pass."""
    from .data import neutral_prompts

    prompts = neutral_prompts() if prompts is None else prompts
    base = _last_logits(model, normalize_items(prompts, system=base_system), chat=True, batch_size=batch_size)
    return {name: kl_divergence(base, _last_logits(model, normalize_items(prompts, system=sysp), chat=True,
                                                   batch_size=batch_size))
            for name, sysp in systems.items()}


def prompt_kl(model: Model, system: str, prompts: Any = None, *, base_system: str | None = None,
              batch_size: int = 16) -> np.ndarray:
    """Per prompt KL at the next token from the model with ``base_system`` (default: the template's
    default) to the model with the system prompt ``system``: the strength of a prompted persona."""
    return next_token_kl(model, prompts, (), system=system, base_system=base_system, chat=True, batch_size=batch_size)


# ------------------------------------------------------------------------------------ matching
@dataclass
class StrengthMatch:
    """Coefficients that give every vector the same effect size (see :func:`match_strength`).

    Attributes:
        rows: per vector: ``label``, ``site``, ``norm`` (norm of the added vector), ``multiplier``
            (norm / |v|), ``relative`` (norm / mean residual norm at the site), ``achieved``
            (Estimate of the measure at the matched norm, CI over prompts), ``evaluations``.
        target: the target value of the measure (the median if targets differ per vector;
            each row has its own ``target``).
        measure: ``"kl"`` (mean next-token KL from the unsteered model, nats) or the callable's name.
        positions: the position policy used while matching (use the same when applying).
    """

    rows: list[dict]
    target: float
    measure: str
    positions: Any
    provenance: Provenance = field(default_factory=Provenance)
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def row(self, label: str) -> dict:
        for r in self.rows:
            if r["label"] == label:
                return r
        raise KeyError(f"no matched strength for {label!r}; have {[r['label'] for r in self.rows]}")

    def operator(self, label: str, vector: SteeringVector | torch.Tensor, *, sign: float = 1.0,
                 positions: Any = None) -> Add:
        """The :class:`Add` of ``vector`` at the matched strength (``scale="unit"``, alpha = matched norm)."""
        r = self.row(label)
        v = vector.vector(r["site"]) if isinstance(vector, SteeringVector) else torch.as_tensor(vector)
        return Add(r["site"], v, float(sign) * r["norm"], positions=self.positions if positions is None else positions,
                   scale="unit", label=f"{label} (matched {self.measure}={r.get('target', self.target):.3g})")

    def to_dataframe(self):
        import pandas as pd

        recs = []
        for r in self.rows:
            a = r["achieved"]
            recs.append({"label": r["label"], "site": r["site"], "target": r.get("target", self.target),
                         "measure": self.measure,
                         "norm": r["norm"], "multiplier": r["multiplier"], "relative": r.get("relative"),
                         "achieved": a.value, "ci_low": a.ci_low, "ci_high": a.ci_high, "n": a.n,
                         "evaluations": r["evaluations"], "positions": str(self.positions)})
        return pd.DataFrame(recs)

    def summary(self) -> str:
        """The matched norm of every vector and the effect it achieved."""
        parts = [f"{r['label']} at {r['site']}: norm {r['norm']:.3g} (x{r['multiplier']:.3g}) -> {r['achieved']}"
                 for r in self.rows]
        return (f"strength matched to {self.measure} = {self.target:.3g} (positions {self.positions}): "
                + "; ".join(parts))


def _bisect(f: Callable[[float], float], target: float, hi: float, *, rtol: float, max_iter: int,
            max_doublings: int = 10) -> tuple[float, list[tuple[float, float]]]:
    """Smallest-bracket bisection for ``f(c) = target`` with ``f(0) = 0`` and f increasing."""
    curve = []
    lo = 0.0
    fh = f(hi)
    curve.append((hi, fh))
    k = 0
    while fh < target:
        if k >= max_doublings:
            raise CalibrationError(
                f"the measure only reaches {fh:.4g} at norm {hi:.4g} (target {target:.4g}); lower the target"
            )
        lo, hi = hi, hi * 2
        fh = f(hi)
        curve.append((hi, fh))
        k += 1
    best = (hi, fh)
    for _ in range(max_iter):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
        fm = f(mid)
        curve.append((mid, fm))
        if abs(fm - target) < abs(best[1] - target):
            best = (mid, fm)
        if abs(fm - target) <= rtol * abs(target):
            return mid, curve
        if fm < target:
            lo = mid
        else:
            hi = mid
    return best[0], curve


def match_strength(model: Model, vectors: Mapping[str, SteeringVector | torch.Tensor], prompts: Any = None, *,
                   layer: int | str | Site | None = None, target: float | Mapping[str, float] = 0.1, measure: Any = "kl",
                   positions: Any = "all", sign: float = 1.0, norms: Any = None, chat: bool = True,
                   rtol: float = 0.05, max_iter: int = 20, batch_size: int = 16, seed: int = 0,
                   progress: bool = False) -> StrengthMatch:
    """Find, for each vector, the added norm at which ``measure`` reaches ``target``.

    Args:
        vectors: ``{label: SteeringVector or tensor}``; a SteeringVector is taken at ``layer``
            (a tensor needs ``layer`` as a site, e.g. ``"resid_post.12"``).
        prompts: neutral prompts (default: the shipped set, :func:`steering.data.neutral_prompts`).
        target: the target value: mean next-token KL in nats for ``measure="kl"`` (equal KL
            from the unsteered model), or the target shift of a callable measure; one number
            for every vector, or ``{label: target}``.
        measure: ``"kl"``, or a callable ``measure(model) -> per-item values`` (e.g. an A/B scorer
            over reference items), evaluated with the steering active; its shift from the
            unsteered value is matched ("equal shift on a reference scorer").
        positions: position policy of the steering while matching.
        sign: +1 adds ``+v``, -1 adds ``-v``.
        norms: a :class:`ResidualNorms` to also report each strength relative to the mean residual norm.
    """
    from .data import neutral_prompts

    check_positions(positions)
    targets = dict(target) if isinstance(target, Mapping) else {label: float(target) for label in vectors}
    missing = set(vectors) - set(targets)
    if missing:
        raise CalibrationError(f"no target for {sorted(missing)}")
    bad = {k: t for k, t in targets.items() if not t > 0}
    if bad:
        raise CalibrationError(f"targets must be positive (a KL, or a shift in the vector's direction); got {bad}")
    prompts = neutral_prompts() if prompts is None else prompts
    items = normalize_items(prompts)
    rows, curves = [], {}
    replays: dict[Site, Any] = {}
    base_logits: torch.Tensor | None = None
    base_measure = None
    labels = list(vectors)
    it = labels
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(labels, desc="match strength", unit="vector")
    for label in it:
        vec = vectors[label]
        if isinstance(vec, SteeringVector):
            site = vec.site_at(layer)
            v = vec.vectors[site]
        else:
            if layer is None or isinstance(layer, int):
                raise CalibrationError(f"{label}: a plain tensor needs layer= as a site name, e.g. 'resid_post.12'")
            site = parse_site(layer)
            v = torch.as_tensor(vec).float()
        site = model.check_site(site)
        u = sign * v / v.norm()
        if measure == "kl":
            if site not in replays:
                replays[site] = _replay(model, items, site, positions, chat, batch_size)
            rp = replays[site]
            if base_logits is None:
                base_logits = rp.last_logits(None)
            cache: dict[float, np.ndarray] = {}

            def per_item(c: float, rp=rp, u=u, cache=cache) -> np.ndarray:
                if c not in cache:
                    cache[c] = kl_divergence(base_logits, rp.last_logits(c * u))
                return cache[c]
            mname = "kl"
        elif callable(measure):
            if base_measure is None:
                base_measure = np.asarray(measure(model), dtype=float)
            cache = {}

            def per_item(c: float, site=site, u=u, cache=cache) -> np.ndarray:
                if c not in cache:
                    with steer(model, Add(site, u, c, positions=positions, scale="multiplier")):
                        cache[c] = np.asarray(measure(model), dtype=float) - base_measure
                return cache[c]
            mname = getattr(measure, "__name__", "measure")
        else:
            raise CalibrationError(f"measure must be 'kl' or a callable, got {measure!r}")
        ref = float(rp.reference_norm) if measure == "kl" else float(v.norm())
        c, curve = _bisect(lambda c: float(np.mean(per_item(c))), targets[label], max(ref, 1e-3), rtol=rtol,
                           max_iter=max_iter)
        rel = None
        if norms is not None:
            from .vector import lookup_norm

            rel = c / lookup_norm(norms, site)
        rows.append({"label": label, "site": site.name, "target": targets[label], "norm": c, "multiplier": c / float(v.norm()), "relative": rel,
                     "achieved": mean_estimate(per_item(c), seed=seed, statistic=f"matched_{mname}"), "evaluations": len(curve)})
        curves[label] = curve
    prov = model.provenance(data_hash=data_hash([i.to_dict() for i in items], targets, str(positions)), seed=seed,
                            sites=tuple(sorted({r["site"] for r in rows})),
                            extra={"measure": str(measure if isinstance(measure, str) else measure.__name__),
                                   "sign": sign})
    return StrengthMatch(rows, float(np.median(list(targets.values()))),
                         "kl" if measure == "kl" else str(getattr(measure, "__name__", "measure")),
                         positions, prov, curves)


def _replay(model: Model, items: Sequence[Any], site: Site, positions: Any, chat: bool, batch_size: int):
    from .fastpath import ResidualReplay

    rp = ResidualReplay(model, items, site, positions=positions, chat=chat, batch_size=batch_size)
    # a natural starting scale for the bisection: the mean residual norm at the site
    rp.reference_norm = float(np.mean(rp.batch_norms))
    return rp
