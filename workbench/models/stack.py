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
from typing import Any, Callable, Iterator

import torch

from ..sites import Site
from . import compat
from .backends import HookFiringError, apply_at_access, plan_access

__all__ = ["StackRunner", "raw_site_hooks"]

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
        """Residual stream entering layer 0 (token embedding, plus learned positions for GPT-2)."""
        h = self.model._embed(input_ids)
        if self.model._pos_embed is not None:
            h = h + self.model._pos_embed(position_ids).to(h.device)
        return h

    def _mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, cache: Any):
        return compat.causal_mask(self.model._hf_config, hidden, attention_mask, position_ids, cache)

    @torch.inference_mode()
    def run(self, hidden: torch.Tensor, start: int, end: int | None = None, *, attention_mask: torch.Tensor,
            position_ids: torch.Tensor, cache: Any = None, hooks: dict[Site, HookFn] | None = None) -> torch.Tensor:
        """Residual stream after layer ``end - 1`` given ``hidden`` entering layer ``start``.

        ``hidden`` covers the positions being computed (``[batch, t, d_model]``);
        ``attention_mask`` covers the cached prefix *and* these positions (``[batch, past + t]``);
        ``position_ids`` are those of these positions (``[batch, t]``); ``cache`` holds the keys and
        values of the prefix for every layer from ``start`` on (it is extended in place).
        """
        end = self.n_layers if end is None else end
        if not 0 <= start <= end <= self.n_layers:
            raise ValueError(f"need 0 <= start <= end <= {self.n_layers}, got start={start}, end={end}")
        use_cache = cache is not None
        mask = self._mask(hidden, attention_mask, position_ids, cache)
        pe = self.model._rotary(hidden, position_ids) if self.model._rotary is not None else None
        ctx = raw_site_hooks(self.model, hooks) if hooks else contextlib.nullcontext()
        with ctx:
            for i in range(start, end):
                hidden = compat.call_layer(self.model._layers[i], hidden, attention_mask=mask, position_ids=position_ids,
                                           position_embeddings=pe, cache=cache, use_cache=use_cache)
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
