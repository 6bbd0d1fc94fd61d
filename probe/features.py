"""Feature sources for the batched trainer: activations in memory, or streamed from the disk store.

A feature source yields ``(row_index, x)`` chunks with ``x`` of shape ``[n_layers, rows, d]``,
so one pass over it visits every example at every layer. The in-memory source slices a tensor
(no copies); :class:`StoreFeatures` reads one shard at a time from a
:class:`workbench.store.ActivationStore` (one tensor per layer site), so memory is bounded by
a shard, not by the number of examples.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from workbench.errors import WorkbenchError

__all__ = ["FeatureSource", "TensorFeatures", "StoreFeatures", "as_features", "FeatureError"]


class FeatureError(WorkbenchError, ValueError):
    """Activations of the wrong shape, or a store without the requested sites."""


class FeatureSource:
    """Base class: ``n_layers``, ``n``, ``d``, ``layers`` and :meth:`chunks`, which yields
    ``(row_index, x [n_layers, rows, d])`` float32 chunks covering every example once; a chunk
    may be a view of a reused buffer, valid until the next chunk is requested."""

    n_layers: int
    n: int
    d: int
    layers: list[int]
    site_kind: str

    def chunks(self, device: Any = "cpu", chunk_rows: int = 4096) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    @property
    def streamed(self) -> bool:
        return False


class TensorFeatures(FeatureSource):
    """Activations ``[n_layers, n, d]`` held in memory (numpy or torch)."""

    def __init__(self, x: Any, layers: Sequence[int] | None = None, site_kind: str = "resid_post"):
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if t.ndim == 2:
            t = t.unsqueeze(0)
        if t.ndim != 3:
            raise FeatureError(f"activations must be [n_layers, n_examples, d] (or [n, d] for one layer); got shape {tuple(t.shape)}")
        if not torch.is_floating_point(t):
            raise FeatureError(f"activations must be floating point; got {t.dtype}")
        self.x = t
        self.n_layers, self.n, self.d = t.shape
        self.layers = list(layers) if layers is not None else list(range(self.n_layers))
        if len(self.layers) != self.n_layers:
            raise FeatureError(f"{len(self.layers)} layer ids for {self.n_layers} layers of activations")
        self.site_kind = site_kind

    def chunks(self, device: Any = "cpu", chunk_rows: int = 4096):
        for a in range(0, self.n, chunk_rows):
            b = min(self.n, a + chunk_rows)
            yield torch.arange(a, b, device=device), self.x[:, a:b].to(device=device, dtype=torch.float32)


class StoreFeatures(FeatureSource):
    """Stream ``[n_layers, shard_rows, d]`` chunks from an :class:`~workbench.store.ActivationStore`.

    ``sites``: the store's site names to use as layers (default: every ``site_kind`` site in
    the store, ordered by layer). The store must hold one row per prompt (``positions="last"``).
    """

    def __init__(self, store: Any, sites: Sequence[Any] | None = None, site_kind: str = "resid_post"):
        from workbench.sites import parse_site

        if store.positions != "last":
            raise FeatureError(f"the store at {store.dir} has positions={store.positions!r}; probes need one row per "
                               "prompt (collect with positions='last' or write pooled rows with write_activation_store)")
        if sites is None:
            parsed = sorted((parse_site(s) for s in store.sites if parse_site(s).kind == site_kind), key=lambda s: s.layer)
            if not parsed:
                raise FeatureError(f"the store at {store.dir} has no {site_kind!r} sites (it has {store.sites[:5]}...)")
        else:
            parsed = [parse_site(s) for s in sites]
            missing = [s.name for s in parsed if s.name not in store.sites]
            if missing:
                raise FeatureError(f"sites {missing} are not in the store at {store.dir} (stored: {store.sites[:6]}...)")
        kinds = {s.kind for s in parsed}
        self.site_kind = kinds.pop() if len(kinds) == 1 else "mixed"
        self.store = store
        self.sites = [s.name for s in parsed]
        self.layers = [s.layer for s in parsed]
        self.n_layers = len(parsed)
        self.n = store.n_prompts
        it = store.iter_shards(self.sites[0])
        first = next(it)[1]
        it.close()
        if first.ndim != 2:
            raise FeatureError(f"site {self.sites[0]} has rows of shape {tuple(first.shape[1:])}; probes need vectors [d]")
        self.d = int(first.shape[1])
        self._buf: torch.Tensor | None = None

    @property
    def streamed(self) -> bool:
        return True

    def chunks(self, device: Any = "cpu", chunk_rows: int = 4096):
        """One shard at a time, converted to float32 into one ``[n_layers, shard_rows, d]`` buffer
        kept for the life of this source and reused by every pass (a fresh shard-sized tensor
        per shard would page-fault its memory in each time). A yielded chunk is valid until the
        next one is requested; do not interleave two passes over the same source."""
        buf = self._buf if self._buf is not None and self._buf.device == torch.device(device) else None
        for idx, parts in self.store.iter_shards_sites(self.sites):
            b = int(idx.numel())
            if buf is None or buf.shape[1] < b:
                buf = self._buf = None  # drop the old buffer before allocating its successor
                buf = self._buf = torch.empty(self.n_layers, b, self.d, dtype=torch.float32, device=device)
            x = buf[:, :b]
            for layer, t in enumerate(parts):
                x[layer].copy_(t)
            del parts  # views of the mapped shard: released before the next shard is mapped
            for a in range(0, b, chunk_rows):
                yield idx[a:a + chunk_rows].to(device), x[:, a:a + chunk_rows]


def as_features(data: Any, *, layers: Sequence[int] | None = None, site_kind: str = "resid_post") -> FeatureSource:
    """A :class:`FeatureSource` from activations (``[L, n, d]`` array/tensor, ``{layer: [n, d]}``,
    :class:`probe.activations.Activations`) or an :class:`~workbench.store.ActivationStore`."""
    from workbench.store import ActivationStore

    if isinstance(data, FeatureSource):
        return data
    if isinstance(data, ActivationStore):
        return StoreFeatures(data, site_kind=site_kind)
    if hasattr(data, "x") and hasattr(data, "layers") and hasattr(data, "site_kind"):  # Activations
        return TensorFeatures(data.x, data.layers, data.site_kind)
    if isinstance(data, dict):
        keys = sorted(data)
        return TensorFeatures(torch.stack([torch.as_tensor(np.asarray(data[k])) for k in keys]), keys, site_kind)
    return TensorFeatures(data, layers, site_kind)
