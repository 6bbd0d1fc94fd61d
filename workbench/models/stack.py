"""Run a slice of the decoder stack directly: the fast path for work a patch cannot change.

Activation patching on a CPU is compute-bound, so a patched run must skip what the patch cannot
affect: the layers before the patched layer (start from the cached residual stream), the
positions before the patched position (their keys and values come from a cached prefix), and
the logits at positions the metric never reads. TransformerLens and nnsight always run the whole
model, so this module calls the model's own decoder layers (the same modules, the same weights;
under the TL backend their children are the bridge's components) with each family's calling
convention, and reaches sites with plain PyTorch hooks on the original modules.

Correctness is tested against full forwards through both backends (tests/test_stack.py).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch

from ..sites import Site
from . import compat
from .backends import HookFiringError, apply_at_access, plan_access

__all__ = ["StackRunner", "raw_site_hooks", "CapturedRun", "capture_run", "prefix_cache"]

HookFn = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def raw_site_hooks(model: Any, hooks: dict[Site, HookFn], *, check: bool = True) -> Iterator[Counter]:
    """Install ``fn(x) -> x`` at canonical sites with PyTorch hooks on the original modules.

    Yields a counter of firings per site; on exit (when ``check``), every site must have fired
    the same, non-zero number of times (once per forward through it).
    """
    arch, facts = model.arch, model.facts
    counts: Counter = Counter()
    handles = []
    for (_order, path, io), accs in plan_access(arch, hooks):
        module = model._module_ref(path)
        here = [s for _a, items in accs for s, _m, _f in items]
        if io == "output":
            def out_hook(mod, args, output, accs=accs, here=here):
                for s in here:
                    counts[s] += 1
                new = output
                for acc, items in accs:
                    new = apply_at_access(arch, facts, new, items, acc.index)
                return new
            handles.append(module.register_forward_hook(out_hook))
        else:
            def in_hook(mod, args, kwargs, accs=accs, here=here):
                for s in here:
                    counts[s] += 1
                native = args[0] if args else kwargs["hidden_states"]
                new = native
                for acc, items in accs:
                    new = apply_at_access(arch, facts, new, items, acc.index)
                if args:
                    return (new,) + tuple(args[1:]), kwargs
                return args, {**kwargs, "hidden_states": new}
            handles.append(module.register_forward_pre_hook(in_hook, with_kwargs=True))
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()
    if check and hooks:
        fired = {s.name: counts.get(s, 0) for s in hooks}
        if len(set(fired.values())) != 1 or 0 in fired.values():
            raise HookFiringError(f"raw hooks fired unevenly: {fired} (site: times fired)")


class StackRunner:
    """Run layers ``[start, end)`` of a :class:`HookedModel` on residual-stream tensors.

    Example (what a patched run does)::

        runner = StackRunner(model)
        cache = runner.prefix_cache(corrupt_ids, upto=p)       # keys/values of positions < p
        h = resid_pre_L[:, p:]                                  # patched residual from position p on
        h = runner.run(h, start=L, attention_mask=mask, position_ids=pos[:, p:],
                       cache=runner.expand(cache, h.shape[0]))
        logits = runner.logits(h[:, -1])                        # only where the metric reads
    """

    def __init__(self, model: Any):
        self.model = model
        self.arch = model.arch
        self.n_layers = model.facts.n_layers

    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Residual stream entering layer 0 (:meth:`HookedModel.embed`)."""
        return self.model.embed(input_ids, position_ids)

    @torch.inference_mode()
    def run(self, hidden: torch.Tensor, start: int, end: int | None = None, *, attention_mask: torch.Tensor,
            position_ids: torch.Tensor, cache: Any = None, hooks: dict[Site, HookFn] | None = None) -> torch.Tensor:
        """Residual stream after layer ``end - 1`` given ``hidden`` entering layer ``start``.

        ``hidden`` covers the positions being computed (``[batch, t, d_model]``);
        ``attention_mask`` covers the cached prefix *and* these positions (``[batch, past + t]``);
        ``position_ids`` are those of these positions (``[batch, t]``); ``cache`` holds the keys and
        values of the prefix for every layer from ``start`` on (it is extended in place). Each layer gets
        the mask and rotary embeddings of its attention type (full, sliding-window, chunked), as the
        model's own forward gives them.
        """
        end = self.n_layers if end is None else end
        if not 0 <= start <= end <= self.n_layers:
            raise ValueError(f"need 0 <= start <= end <= {self.n_layers}, got start={start}, end={end}")
        use_cache = cache is not None
        cfg = self.model.hf_config
        # masks and rotary embeddings before any layer runs (the cache grows as layers run, as in the
        # model's own forward): one per attention type among the layers run
        first = {}
        for i in range(start, end):
            first.setdefault(self.arch.layer_type(i), i)
        masks = {lt: compat.causal_mask(cfg, hidden, attention_mask, position_ids, cache, layer_type=lt) for lt in first}
        pes = {lt: self.model.rotary_embeddings(hidden, position_ids, layer=i) for lt, i in first.items()}
        ctx = raw_site_hooks(self.model, hooks) if hooks else contextlib.nullcontext()
        with ctx:
            for i in range(start, end):
                lt = self.arch.layer_type(i)
                hidden = compat.call_layer(self.model._layers[i], hidden, attention_mask=masks[lt],
                                           position_ids=position_ids, position_embeddings=pes[lt], cache=cache,
                                           use_cache=use_cache)
        return hidden

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Unembed final-layer residuals (``lm_head(final_norm(h))``)."""
        return self.model.unembed(hidden)

    @torch.inference_mode()
    def prefix_cache(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                     upto: int) -> Any:
        """A KV cache holding every layer's keys and values for columns ``[0, upto)``."""
        cache = compat.new_cache()
        if upto == 0:
            return cache
        h = self.embed(input_ids[:, :upto], position_ids[:, :upto])
        self.run(h, 0, attention_mask=attention_mask[:, :upto], position_ids=position_ids[:, :upto], cache=cache)
        return cache

    @staticmethod
    def expand(cache: Any, n: int) -> Any:
        """A copy of a batch-1 (or batch-n) cache repeated to batch ``n`` (the original is untouched)."""
        return compat.repeat_cache(cache, n)


# ---------------------------------------------------------------------------------------------------------------
# The partial-forward engine both fast paths use (circuits' patching engine, steering's residual replay): one full
# forward through the raw stack that keeps activations at chosen sites and every layer's keys and values, then
# runs that resume from a layer with a cached prefix (``StackRunner.run(..., cache=prefix_cache(...))``).


@dataclass
class CapturedRun:
    """One unpatched forward through the raw decoder stack.

    ``acts``: ``{site: activation}`` (canonical shapes, detached copies); ``kv``: every layer's ``(keys, values)``
    (``[batch, kv_heads, seq, d_head]``); ``final``: the residual after the last layer (before the final norm)."""

    acts: dict[Site, torch.Tensor]
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    final: torch.Tensor


@torch.inference_mode()
def capture_run(model: Any, input_ids: torch.Tensor, sites: Sequence[Site], *,
                attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                embed_offset: torch.Tensor | None = None) -> CapturedRun:
    """Run the whole stack once on ``input_ids`` capturing ``sites`` (plain PyTorch hooks on the original modules,
    :func:`raw_site_hooks`) and every layer's keys and values. ``embed_offset`` is added to the embeddings (e.g.
    the noise of a noised-embedding corruption). Without a mask every token is real and positions are 0..T-1."""
    runner = StackRunner(model)
    B, T = input_ids.shape
    if position_ids is None:
        position_ids = torch.arange(T, device=input_ids.device).expand(B, T)
    if attention_mask is None:
        attention_mask = torch.ones(B, T, dtype=torch.long, device=input_ids.device)
    h = runner.embed(input_ids, position_ids)
    if embed_offset is not None:
        h = h + embed_offset.to(h.dtype)
    acts: dict[Site, torch.Tensor] = {}

    def grab(s: Site) -> HookFn:
        def fn(x: torch.Tensor) -> torch.Tensor:
            acts[s] = x.detach().clone()
            return x
        return fn

    cache = compat.new_cache()
    with raw_site_hooks(model, {s: grab(s) for s in sites}):
        final = runner.run(h, 0, attention_mask=attention_mask, position_ids=position_ids, cache=cache)
    return CapturedRun(acts, compat.cache_kv(cache), final.detach().clone())


def prefix_cache(kv: Sequence[tuple[torch.Tensor, torch.Tensor]], upto: int | None = None, repeat: int = 1) -> Any:
    """A fresh KV cache holding ``kv``'s columns ``[0, upto)`` (all when None), tiled ``repeat`` times along the
    batch (cell-major: a batch-1 prefix is expanded without a copy). The given tensors are never modified."""
    out = []
    for k, v in kv:
        if upto is not None:
            k, v = k[:, :, :upto], v[:, :, :upto]
        if repeat > 1:
            if k.shape[0] == 1:
                k, v = k.expand(repeat, *k.shape[1:]), v.expand(repeat, *v.shape[1:])
            else:
                k, v = k.repeat(repeat, 1, 1, 1), v.repeat(repeat, 1, 1, 1)
        out.append((k, v))
    return compat.cache_from_kv(out)

