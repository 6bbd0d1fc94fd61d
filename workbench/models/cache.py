"""In-memory activation cache: canonical sites -> tensors, with the batch's tokens."""

from __future__ import annotations

from typing import Iterator, Mapping

import torch

from ..sites import Site, SiteLike, parse_site
from .tokens import Tokens

__all__ = ["ActivationCache"]


class ActivationCache(Mapping):
    """Activations keyed by :class:`Site` (strings like ``"resid_post.3"`` work too).

    Tensors have the canonical shapes of :mod:`workbench.sites` over the padded batch
    (``positions="all"``), or ``[batch, ...]`` when captured at one position per row
    (``positions="last"``). ``tokens`` holds the batch so padding can be masked out.
    """

    def __init__(self, data: dict[Site, torch.Tensor], tokens: Tokens | None, positions: object = "all"):
        self._data = data
        self.tokens = tokens
        self.positions = positions

    def __getitem__(self, key: SiteLike) -> torch.Tensor:
        s = parse_site(key)
        if s in self._data:
            return self._data[s]
        if s.head is not None and s.whole in self._data:
            t = self._data[s.whole]
            hdim = 1 if s.kind == "pattern" else (2 if self.positions == "all" else 1)
            return t.select(hdim, s.head)
        have = ", ".join(x.name for x in list(self._data)[:8])
        raise KeyError(f"{s.name} was not captured (captured: {have}{'...' if len(self._data) > 8 else ''})")

    def __iter__(self) -> Iterator[Site]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        items = ", ".join(f"{s.name}: {tuple(t.shape)}" for s, t in list(self._data.items())[:6])
        return f"ActivationCache({items}{', ...' if len(self) > 6 else ''})"

    def stack(self, kind: str, layers: list[int] | None = None) -> torch.Tensor:
        """Stack one kind over layers: ``[n_layers, ...]``."""
        got = sorted(s.layer for s in self._data if s.kind == kind and s.head is None)
        layers = got if layers is None else list(layers)
        if not layers:
            raise KeyError(f"no {kind!r} sites captured")
        return torch.stack([self[Site(kind, L)] for L in layers])

    def last(self, key: SiteLike) -> torch.Tensor:
        """The activation at each row's last real token: ``[batch, ...]``."""
        t = self[key]
        if self.positions != "all":
            return t
        if self.tokens is None:
            raise ValueError("this cache has no tokens; cannot find last positions")
        s = parse_site(key)
        idx = self.tokens.last_index.to(t.device)
        if s.kind == "pattern":
            return t[torch.arange(t.shape[0]), :, idx]
        return t[torch.arange(t.shape[0]), idx]

    def real(self, key: SiteLike) -> torch.Tensor:
        """Activations at real (non-padding) tokens, flattened: ``[n_real_tokens, ...]``."""
        if self.positions != "all" or self.tokens is None:
            raise ValueError("real() needs a cache captured at all positions with its tokens")
        s = parse_site(key)
        if s.kind == "pattern":
            raise ValueError("real() is for position-major sites, not pattern")
        return self[key][self.tokens.attention_mask.bool().to(self[key].device)]
