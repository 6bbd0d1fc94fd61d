"""SteeringVector: directions per layer, on disk as safetensors + JSON, applied as a context manager.

:class:`SteeringVector` is a :class:`workbench.vectors.DirectionSet` (one 1-D vector per site,
e.g. ``resid_post.L`` for every layer it was built at; metadata: model, weights hash, method,
data hash, seed, norms) with the steering verbs::

    vec = build_caa_vectors(model, pairs, layers=range(8, 20))
    vec.save("runs/caa/sycophancy")                # sycophancy.safetensors + sycophancy.json
    vec = SteeringVector.load("runs/caa/sycophancy")
    with vec.apply(model, layers=13, alpha=2.0, positions="all"):
        model.generate(prompts)
    with steer(model, vec.at(13, 2.0), other.at(15, -1.0)):   # several at once
        ...
    with steer(model, refusal.ablation()):                     # directional ablation
        ...

A probe direction arrives as a DirectionSet file (``SteeringVector.load(path)``) or a tensor
(:meth:`SteeringVector.from_tensor`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch

from workbench.layers import LayerError
from workbench.results import Provenance
from workbench.sites import SITE_KINDS, Site, parse_site
from workbench.vectors import DirectionSet

from .operators import Ablate, Add, SteeringError, steer

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["SteeringVector", "lookup_norm"]


def lookup_norm(norms: Any, site: Site) -> float | None:
    """The reference (mean residual) norm at ``site`` from a ResidualNorms result, a mapping keyed by
    Site / site name / layer, or a single number."""
    if norms is None:
        return None
    if isinstance(norms, (int, float)):
        return float(norms)
    if hasattr(norms, "norm") and callable(norms.norm):
        return float(norms.norm(site))
    if isinstance(norms, Mapping):
        for key in (site, site.name, site.layer):
            if key in norms:
                v = norms[key]
                return float(getattr(v, "value", v))
        raise SteeringError(f"no reference norm for {site.name} in norms (keys: {list(norms)[:6]}...)")
    raise SteeringError(f"norms must be a ResidualNorms result, a mapping or a number, got {type(norms).__name__}")


class SteeringVector(DirectionSet):
    """Steering directions per site (see the module docstring).

    Attributes (from :class:`~workbench.vectors.DirectionSet`): ``vectors`` ``{Site: [d]}``,
    ``method``, ``provenance``, ``meta``."""

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_tensor(cls, vector: Any, layer: int | Site | str, *, site: str = "resid_post", method: str = "probe",
                    model: Any = None, meta: dict | None = None, provenance: Provenance | None = None) -> "SteeringVector":
        """One direction (e.g. a probe's weight vector) at one layer. With ``model`` the width and
        layer are checked and the provenance names the model."""
        s = parse_site(layer) if isinstance(layer, (Site, str)) else Site(site, int(layer))
        v = torch.as_tensor(vector).detach().float().cpu()
        if v.ndim != 1:
            raise SteeringError(f"a direction must be 1-D [d_model]; got shape {tuple(v.shape)}")
        if model is not None:
            s = model.check_site(s)
            if v.shape[0] != model.facts.d_model:
                raise SteeringError(f"direction has width {v.shape[0]} but {model.name} has d_model={model.facts.d_model}")
            prov = provenance or model.provenance(sites=(s.name,))
        else:
            prov = provenance or Provenance(sites=(s.name,))
        return cls({s: v}, method, prov, dict(meta or {}))

    @classmethod
    def from_direction_set(cls, ds: DirectionSet) -> "SteeringVector":
        return cls(dict(ds.vectors), ds.method, ds.provenance, dict(ds.meta))

    # ---------------------------------------------------------------- lookup
    def site_at(self, layer: int | Site | str | None = None) -> Site:
        """The site of the vector at ``layer`` (a Site or name is checked to exist). ``None`` needs a
        single-site vector."""
        if layer is None:
            if len(self.vectors) != 1:
                raise LayerError(f"this vector has sites at layers {self.layers}: say which layer to use")
            return next(iter(self.vectors))
        if isinstance(layer, (Site, str)):
            s = parse_site(layer)
            if s not in self.vectors:
                raise LayerError(f"no vector at {s.name}; this vector has {', '.join(x.name for x in self.sites)}")
            return s
        layer = int(layer)
        if layer < 0:
            raise LayerError(f"use a non-negative layer with a SteeringVector (it has layers {self.layers})")
        cands = [s for s in self.vectors if s.layer == layer]
        if not cands:
            raise LayerError(f"no vector at layer {layer}; this vector has layers {self.layers} "
                             f"(build it at more layers, or pick one of those)")
        if len(cands) > 1:
            raise LayerError(f"several sites at layer {layer} ({[c.name for c in cands]}): pass the site name")
        return cands[0]

    def vector(self, layer: int | Site | str | None = None) -> torch.Tensor:
        return self.vectors[self.site_at(layer)]

    def select(self, layers: Any) -> "SteeringVector":
        """A copy with only the given layers."""
        if isinstance(layers, (int, Site, str)):
            layers = [layers]
        sites = [self.site_at(L) for L in layers]
        return type(self)({s: self.vectors[s] for s in sites}, self.method, self.provenance, dict(self.meta))

    # ---------------------------------------------------------------- operators
    def at(self, layer: int | Site | str | None = None, alpha: float = 1.0, *, positions: Any = "all",
           scale: str = "multiplier", norms: Any = None, label: str | None = None) -> Add:
        """An :class:`~steering.operators.Add` of this vector at one layer (see ``scale`` there)."""
        s = self.site_at(layer)
        ref = lookup_norm(norms, s) if scale == "relative" else None
        return Add(s, self.vectors[s], alpha, positions, scale, ref,
                   label or f"{self.meta.get('name', self.method)}@{s.name}", self.provenance.model)

    def ablation(self, layer: int | Site | str | None = None, *, layers: Any = "all", positions: Any = "all",
                 kinds: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out")) -> Ablate:
        """Directional ablation of the vector at ``layer`` (its direction only) at every layer and position."""
        return Ablate(self.vector(layer), layers, kinds, positions, label=f"ablate {self.method}",
                      source_model=self.provenance.model)

    def operators(self, layers: Any = None, alpha: float = 1.0, *, positions: Any = "all", scale: str = "multiplier",
                  norms: Any = None) -> list[Add]:
        """One :class:`Add` per layer (all of this vector's layers by default)."""
        if layers is None:
            sites = self.sites
        else:
            sites = [self.site_at(L) for L in ([layers] if isinstance(layers, (int, Site, str)) else layers)]
        return [self.at(s, alpha, positions=positions, scale=scale, norms=norms) for s in sites]

    @contextlib.contextmanager
    def apply(self, model: Model, layers: Any = None, alpha: float = 1.0, *, positions: Any = "all",
              scale: str = "multiplier", norms: Any = None) -> Iterator[Any]:
        """Context manager: add ``alpha * v`` at ``layers`` (default: every layer it has) for every call
        on ``model`` inside the block."""
        ops = self.operators(layers, alpha, positions=positions, scale=scale, norms=norms)
        with steer(model, *ops):
            yield model

    # ---------------------------------------------------------------- transforms
    def normalized(self) -> "SteeringVector":
        """Unit vectors at every site."""
        out = {}
        for s, v in self.vectors.items():
            n = float(v.norm())
            if n == 0.0:
                raise SteeringError(f"the vector at {s.name} has zero norm")
            out[s] = v / n
        return type(self)(out, self.method, self.provenance, {**self.meta, "normalized": True})

    def scaled(self, factor: float) -> "SteeringVector":
        return type(self)({s: v * float(factor) for s, v in self.vectors.items()}, self.method, self.provenance,
                          dict(self.meta))

    def random_like(self, seed: int = 0) -> "SteeringVector":
        """A random-direction control: at each site a uniformly random direction with the same norm
        (Gaussian, normalised; seeded per site so adding layers does not change the others)."""
        out = {}
        for s, v in sorted(self.vectors.items()):
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + s.layer * 101 + SITE_KINDS.index(s.kind))
            r = torch.randn(v.shape[0], generator=g)
            out[s] = r / r.norm() * v.norm()
        meta = {"name": f"random({self.meta.get('name', self.method)})", "control_for": self.method, "seed": seed}
        return type(self)(out, "random", self.provenance.replace(seed=seed), meta)

    def cosine(self, other: "SteeringVector | torch.Tensor") -> dict[str, float]:
        """Cosine similarity per shared site (or with one tensor at every site)."""
        out = {}
        for s, v in sorted(self.vectors.items()):
            w = other if isinstance(other, torch.Tensor) else other.vectors.get(s)
            if w is None:
                continue
            out[s.name] = float(torch.nn.functional.cosine_similarity(v, torch.as_tensor(w).float(), dim=0))
        return out

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([{"site": s.name, "kind": s.kind, "layer": s.layer, "norm": float(v.norm()),
                              "method": self.method, "model": self.provenance.model,
                              "data_hash": self.provenance.data_hash} for s, v in sorted(self.vectors.items())])

    def __repr__(self) -> str:
        name = self.meta.get("name")
        layers = self.layers
        span = f"{layers[0]}..{layers[-1]}" if len(layers) > 3 else str(layers)
        return (f"SteeringVector({(name + ', ') if name else ''}method={self.method!r}, {len(self)} site(s) at layers "
                f"{span}, model={self.provenance.model!r})")
