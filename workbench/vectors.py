"""Direction vectors on disk: one format for steering vectors, persona vectors and probe directions.

A :class:`DirectionSet` holds one vector per (site kind, layer), e.g. a CAA vector at every
layer's ``resid_post``, with the metadata needed to use it correctly later: the model and its
weights hash, the site, how it was built (method, data hash, seed), and each vector's norm.
It is saved as ``<name>.safetensors`` (the tensors) plus ``<name>.json`` (the metadata), never
pickle. Probe directions reach steering this way, as plain tensors: the packages do not import
each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from workbench.errors import WorkbenchError

from .results import Provenance, to_jsonable
from .sites import Site, parse_site

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["DirectionSet", "VectorFileError"]

FORMAT_VERSION = 1


class VectorFileError(WorkbenchError, ValueError):
    pass


@dataclass
class DirectionSet:
    """Vectors keyed by :class:`Site` (``resid_post.12``...), with metadata.

    Attributes:
        vectors: ``{Site: tensor [d]}``.
        method: how they were built (``"mean_diff"``, ``"caa"``, ``"pca"``, ``"probe"``...).
        provenance: model, weights hash, data hash, seed.
        meta: anything else (positions read, normalisation, label names, probe metrics...).
    """

    vectors: dict[Site, torch.Tensor]
    method: str
    provenance: Provenance = field(default_factory=Provenance)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = {parse_site(k): torch.as_tensor(v).detach().float().cpu() for k, v in self.vectors.items()}
        for s, v in self.vectors.items():
            if v.ndim != 1:
                raise VectorFileError(f"vector at {s.name} must be 1-D, got shape {tuple(v.shape)}")

    def __getitem__(self, key: Any) -> torch.Tensor:
        s = parse_site(key)
        if s not in self.vectors:
            raise KeyError(f"no vector at {s.name}; have {', '.join(x.name for x in self.sites)}")
        return self.vectors[s]

    def __iter__(self) -> Iterator[Site]:
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def sites(self) -> list[Site]:
        return sorted(self.vectors)

    @property
    def layers(self) -> list[int]:
        return sorted({s.layer for s in self.vectors})

    def norms(self) -> dict[str, float]:
        return {s.name: float(v.norm()) for s, v in sorted(self.vectors.items())}

    def check_compatible(self, model: Model) -> None:
        """Raise if the vectors do not fit ``model`` (width, layers), naming the mismatch."""
        d = model.facts.d_model
        for s, v in self.vectors.items():
            model.check_site(s)
            if v.shape[0] != d:
                raise VectorFileError(
                    f"vector at {s.name} has width {v.shape[0]} but {model.name} has d_model={d}; these "
                    f"vectors were built for {self.provenance.model or 'another model'}"
                )

    def save(self, path: str | Path) -> Path:
        """Write ``path.safetensors`` and ``path.json`` atomically; returns the .safetensors path."""
        from .store import atomic_save_tensors, atomic_write_json

        base = Path(path)
        if base.suffix in (".safetensors", ".json"):
            base = base.with_suffix("")
        tensors = {s.name: v.contiguous() for s, v in self.vectors.items()}
        atomic_save_tensors(base.with_suffix(".safetensors"), tensors, metadata={"format": "workbench-directions"})
        atomic_write_json(base.with_suffix(".json"), {
            "format_version": FORMAT_VERSION, "method": self.method, "provenance": self.provenance.to_dict(),
            "meta": to_jsonable(self.meta), "sites": [s.name for s in self.sites], "norms": self.norms(),
        })
        return base.with_suffix(".safetensors")

    @classmethod
    def load(cls, path: str | Path) -> "DirectionSet":
        from safetensors.torch import load_file

        base = Path(path)
        if base.suffix in (".safetensors", ".json"):
            base = base.with_suffix("")
        st, js = base.with_suffix(".safetensors"), base.with_suffix(".json")
        for p in (st, js):
            if not p.exists():
                raise VectorFileError(f"missing {p}: a direction set is a .safetensors file plus its .json metadata")
        meta = json.loads(js.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise VectorFileError(f"{js} has format_version {meta.get('format_version')}, expected {FORMAT_VERSION}")
        tensors = load_file(str(st))
        prov = meta.get("provenance", {})
        prov["sites"] = tuple(prov.get("sites", ()))
        return cls({parse_site(k): v for k, v in tensors.items()}, meta["method"], Provenance(**prov), meta.get("meta", {}))
