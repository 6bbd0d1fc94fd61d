"""Replay from a cached residual stream: the fast path for sweeps over one steered layer.

Adding a vector at ``resid_post.L`` (or ``resid_pre.L``) cannot change anything computed before
that site, so a sweep over coefficients at one layer runs the unsteered model once up to the
site, caches the residual stream, and for each coefficient runs only the layers after it
(:class:`workbench.models.stack.StackRunner`: the model's own decoder layers and weights) and the
unembedding at the last position. On SmolLM2 at layer 12 of 30 that is ~40% of a forward pass.
Nor can it change the positions before the first steered one (attention is causal): when the
policy steers only the last tokens (``"generated"``, CAA's tokens after the instruction), the
unsteered pass also keeps every layer's keys and values of the earlier positions, and each
coefficient runs only the steered positions through the later layers (for CAA's A/B prompts,
a few tokens out of ~90).

Results equal a full forward under :func:`steering.operators.steer` through either backend to
1e-4 (tested in ``tests/steering/test_fastpath.py``). Only additive steering at one residual
site takes this path; anything else (ablation at every layer, several sites) runs full forwards.
"""

from __future__ import annotations

from typing import Any

import torch

from workbench.models.stack import StackRunner
from workbench.models.tokens import resolve_positions
from workbench.sites import Site, parse_site

from .operators import check_positions
from .record import format_items, normalize_items, pad_left

__all__ = ["ResidualReplay"]


class ResidualReplay:
    """Cache the residual stream of ``items`` at ``site``; then ``last_logits(added)`` gives the
    next-token logits (at each item's last token) with ``added`` added at ``positions``.

    ``positions`` follows the steering policy of a forward pass: ``"all"``/``"prompt"`` every real
    token, ``"generated"``/``"last"`` the last token, or an index spec."""

    def __init__(self, model: Any, items: Any, site: Site | str, *, positions: Any = "all", chat: bool = True,
                 system: str | None = None, assistant_prefix: str | None = None, batch_size: int = 16):
        self.model = model
        self.site = model.check_site(parse_site(site))
        if self.site.kind not in ("resid_pre", "resid_post"):
            raise ValueError(f"the replay fast path steers resid_pre/resid_post sites, not {self.site.kind}")
        self.positions = check_positions(positions)
        self.items = normalize_items(items, system=system, assistant_prefix=assistant_prefix)
        _, ids, _ = format_items(model, self.items, chat=chat)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        self._runner = StackRunner(model)
        self._start = self.site.layer + (1 if self.site.kind == "resid_post" else 0)
        self._batches = []
        self.batch_norms: list[float] = []  # per batch: mean residual norm at the site over real tokens
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            tokens = pad_left(model, [ids[i] for i in idx])
            mask = self._mask(tokens)
            steered = torch.nonzero(mask.any(0)).flatten()
            p0 = int(steered[0]) if len(steered) else 0  # first steered column: nothing before it changes
            if p0 > 0:
                h, kv, full = self._prefix_run(tokens, p0)
            else:
                _, cache = model.run_with_cache(tokens, [self.site], positions="all", logits=None)
                h, kv = cache[self.site].detach(), None
                full = h
            self.batch_norms.append(float(full.float().norm(dim=-1)[tokens.attention_mask.bool()].mean()))
            self._batches.append((idx, tokens, h, mask, p0, kv))
        self.n = len(ids)

    @torch.inference_mode()
    def _prefix_run(self, tokens: Any, p0: int):
        """One unsteered pass through the raw stack: the residual at the site for columns ``>= p0``,
        every layer's keys and values of columns ``< p0``, and the residual at the site everywhere."""
        from transformers import DynamicCache

        from workbench.models.stack import raw_site_hooks

        ids, am, pos = tokens.input_ids, tokens.attention_mask, tokens.position_ids
        got: dict = {}

        def grab(x):
            got["h"] = x.detach().clone()
            return x
        cache = DynamicCache(config=self.model._hf_config)
        with raw_site_hooks(self.model, {self.site: grab}):
            self._runner.run(self._runner.embed(ids, pos), 0, attention_mask=am, position_ids=pos, cache=cache)
        kv = [(layer.keys[:, :, :p0], layer.values[:, :, :p0]) for layer in cache.layers]
        return got["h"][:, p0:], kv, got["h"]

    def _prefix_cache(self, kv: list) -> Any:
        """A fresh cache holding the prefix's keys and values (the stored tensors are never modified)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model._hf_config)
        for layer, (k, v) in zip(cache.layers, kv):
            layer.dtype, layer.device = k.dtype, k.device
            layer.keys, layer.values = k, v
            layer.is_initialized = True
        return cache

    def _mask(self, tokens: Any) -> torch.Tensor:
        p = self.positions
        if isinstance(p, str) and p in ("all", "prompt"):
            return tokens.attention_mask.bool()
        if isinstance(p, str) and p in ("generated", "last"):
            return resolve_positions("last", tokens)
        return resolve_positions(p, tokens)

    @torch.inference_mode()
    def last_logits(self, added: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, vocab]`` float32 logits at each item's last token (input order)."""
        out: list[torch.Tensor | None] = [None] * self.n
        for idx, tokens, h, mask, p0, kv in self._batches:
            x = h
            if added is not None:
                a = torch.as_tensor(added).to(device=h.device, dtype=h.dtype)
                if a.shape != (h.shape[-1],):
                    raise ValueError(f"added vector must have shape ({h.shape[-1]},), got {tuple(a.shape)}")
                x = torch.where(mask[:, p0:, None].to(h.device), h + a, h)
            x = self._runner.run(x, self._start, attention_mask=tokens.attention_mask,
                                 position_ids=tokens.position_ids[:, p0:],
                                 cache=None if kv is None else self._prefix_cache(kv))
            logits = self._runner.logits(x[:, -1]).float().cpu()
            for j, i in enumerate(idx):
                out[i] = logits[j]
        return torch.stack(out)  # type: ignore[arg-type]
