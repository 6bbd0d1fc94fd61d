"""Every contact with transformers' moving parts, in one module.

transformers renames and reshapes its internals between minor releases. 5.25 renamed the KV-cache
argument of models, decoder layers, attention modules and mask functions from ``past_key_values``
to ``cache`` (the old name is a deprecated alias until 5.40). Code that passed ``past_key_values``
to a decoder layer kept running, but TransformerLens 4.3's attention bridges read only
``past_key_values`` (or ``layer_past``) from their keyword arguments, so under 5.25 the cache they
were handed went unused: every KV-cached decode step attended to itself alone and generation
produced garbage with no error.

So the rest of the workbench never names a transformers internal. It goes through these helpers,
which use public entry points only (``inspect.signature`` of a module's ``forward``, the
``Cache.update`` / ``get_seq_length`` / ``batch_repeat_interleave`` methods, ``DynamicCache``,
``masking_utils.create_causal_mask``) and decide the calling convention from the installed code
rather than from a version number:

- :func:`cache_kwarg` / :func:`cache_kwargs`: the keyword a module's ``forward`` takes its cache by
  (``cache``, ``past_key_values`` or ``layer_past``).
- :func:`call_layer`: call one decoder layer by keyword, with only the arguments it accepts.
- :func:`new_cache`, :func:`cache_from_kv`, :func:`cache_kv`, :func:`cache_length`,
  :func:`repeat_cache`: build, read and tile KV caches.
- :func:`causal_mask`: the attention mask a decoder layer expects.
- :func:`alias_bridge_cache_kwargs`: per-instance forward pre-hooks that hand a TransformerLens
  bridge's attention components the cache under the name they read (no global patching).
- :func:`apply_rotary`: rotary position embedding (``rotate_half`` convention) for recomputing
  attention patterns from q and k.

``HookedModel.self_check`` (run by ``load``) compares the cached and uncached paths on every load,
so a future rename that slips past these helpers fails loudly instead of producing wrong numbers.
The tested range is the package's ``transformers`` range; ``make test-latest`` runs the drift
tests against the newest release the ranges allow.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Callable

import torch

__all__ = [
    "CACHE_KWARGS", "cache_kwarg", "cache_kwargs", "call_layer", "new_cache", "cache_from_kv", "cache_kv",
    "cache_length", "repeat_cache", "causal_mask", "alias_bridge_cache_kwargs", "apply_rotary",
]

# Names transformers has used for a forward's KV cache, newest first.
CACHE_KWARGS = ("cache", "past_key_values", "layer_past")


@lru_cache(maxsize=None)
def _params(fn: Callable) -> tuple[frozenset[str], bool]:
    """Parameter names of ``fn`` and whether it takes ``**kwargs``."""
    sig = inspect.signature(fn)
    names = frozenset(sig.parameters)
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def _forward_of(module_or_fn: Any) -> Callable:
    fn = getattr(type(module_or_fn), "forward", None) if isinstance(module_or_fn, torch.nn.Module) else module_or_fn
    if fn is None:  # pragma: no cover - every nn.Module has forward
        raise TypeError(f"{module_or_fn!r} has no forward")
    return fn


def cache_kwarg(module_or_fn: Any) -> str:
    """The keyword ``module_or_fn`` (a module's ``forward`` or a function) takes its KV cache by.

    Prefers the newest name the signature lists (transformers' deprecation shims list the old
    name too), so a renamed argument is followed without a version check.
    """
    names, _ = _params(_forward_of(module_or_fn))
    for k in CACHE_KWARGS:
        if k in names:
            return k
    raise TypeError(
        f"{getattr(module_or_fn, '__qualname__', type(module_or_fn).__name__)} takes no KV cache argument "
        f"(looked for {', '.join(CACHE_KWARGS)}); this transformers release is not supported by the workbench's "
        "compatibility layer (workbench/models/compat.py)"
    )


def cache_kwargs(module_or_fn: Any, cache: Any) -> dict[str, Any]:
    """Keyword arguments that pass ``cache`` (or none) to a full model's forward, with ``use_cache``."""
    if cache is None:
        return {"use_cache": False}
    return {cache_kwarg(module_or_fn): cache, "use_cache": True}


def call_layer(layer: torch.nn.Module, hidden: torch.Tensor, *, attention_mask: Any, position_ids: torch.Tensor,
               position_embeddings: Any, cache: Any, use_cache: bool) -> torch.Tensor:
    """Run one decoder layer on ``hidden`` and return the residual stream it outputs.

    Arguments go by keyword, under the names the layer's ``forward`` declares, and only those it
    accepts (a layer without ``**kwargs`` gets no ``position_embeddings`` it cannot take).
    """
    names, var_kw = _params(_forward_of(layer))
    kw: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids, "use_cache": use_cache}
    if position_embeddings is not None:
        kw["position_embeddings"] = position_embeddings
    if cache is not None:
        kw[cache_kwarg(layer)] = cache
    if not var_kw:
        kw = {k: v for k, v in kw.items() if k in names}
    out = layer(hidden, **kw)
    return out[0] if isinstance(out, tuple) else out


# ----------------------------------------------------------------------------------- caches
def new_cache(config: Any = None) -> Any:
    """An empty dynamic KV cache.

    Without ``config`` every layer keeps all of its positions (what the stack runner and the
    patching engine need: they slice prefixes out of a base run's keys and values). With the model
    config, sliding-window layers keep only their window, as in the model's own generation.
    """
    from transformers import DynamicCache

    return DynamicCache(config=config) if config is not None else DynamicCache()


def cache_from_kv(kv: list[tuple[torch.Tensor, torch.Tensor]], config: Any = None) -> Any:
    """A new cache holding these keys and values (``[batch, kv_heads, positions, d_head]`` per layer).

    The given tensors are never modified (the cache concatenates onto copies).
    """
    cache = new_cache(config)
    for i, (k, v) in enumerate(kv):
        cache.update(k, v, i)
    return cache


def cache_kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the keys and values a cache holds (``[batch, kv_heads, positions, d_head]``)."""
    out = []
    for layer in cache.layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if keys is None or values is None:
            raise ValueError("this cache has a layer with no keys and values (never updated, or not a KV cache)")
        out.append((keys, values))
    return out


def cache_length(cache: Any) -> int:
    """Positions held by a cache (0 for ``None`` or an empty cache)."""
    return 0 if cache is None else int(cache.get_seq_length())


def repeat_cache(cache: Any, n: int) -> Any:
    """A copy of a batch-1 (or batch-``n``) cache with batch ``n`` (the original is untouched)."""
    kv = cache_kv(cache) if cache_length(cache) else []
    if not kv:
        return new_cache()
    b = kv[0][0].shape[0]
    if b not in (1, n):
        raise ValueError(f"can only repeat a batch-1 cache to batch {n}, got batch {b}")
    if b == 1 and n != 1:
        kv = [(k.expand(n, *k.shape[1:]), v.expand(n, *v.shape[1:])) for k, v in kv]
    return cache_from_kv(kv)


# ----------------------------------------------------------------------------------- masks
def causal_mask(config: Any, hidden: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                cache: Any) -> Any:
    """The causal attention mask the model's decoder layers expect for ``hidden`` after ``cache``.

    Built by transformers' own ``create_causal_mask`` for the model's attention implementation
    (eager: an additive float mask; SDPA: a boolean mask or ``None`` when causal alone suffices).
    """
    from transformers.masking_utils import create_causal_mask

    kw = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask, "position_ids": position_ids}
    kw[cache_kwarg(create_causal_mask)] = cache
    return create_causal_mask(**kw)


# ----------------------------------------------------------------------------------- TransformerLens
def alias_bridge_cache_kwargs(bridge: torch.nn.Module) -> list[Any]:
    """Hand a TransformerLens bridge's attention components the KV cache under the name they read.

    TransformerLens 4.3's attention bridges look the cache up as ``past_key_values`` (or
    ``layer_past``); transformers 5.25's decoder layers pass it as ``cache``. A forward pre-hook on
    each attention component of *this* bridge copies ``cache`` to ``past_key_values`` when only the
    former is given. Nothing is patched globally, and when both libraries agree the hook does nothing.
    Returns the hook handles.
    """
    from transformer_lens.model_bridge.generalized_components import AttentionBridge

    def pre_hook(module, args, kwargs):
        if kwargs.get("cache") is not None and kwargs.get("past_key_values") is None \
                and kwargs.get("layer_past") is None:
            kwargs = dict(kwargs)
            kwargs["past_key_values"] = kwargs["cache"]
            return args, kwargs
        return None

    return [m.register_forward_pre_hook(pre_hook, with_kwargs=True)
            for m in bridge.modules() if isinstance(m, AttentionBridge)]


# ----------------------------------------------------------------------------------- rotary
def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of canonical ``x`` ``[batch, pos, heads, d_head]`` given the model's rotary
    module's ``cos``/``sin`` ``[batch, pos, rot_dim]`` (the ``rotate_half`` convention of Llama-family
    models; with ``rot_dim < d_head`` only the first ``rot_dim`` dimensions rotate, as in GPT-NeoX)."""
    c, s = cos.unsqueeze(2).to(x.dtype), sin.unsqueeze(2).to(x.dtype)
    rot = c.shape[-1]
    if rot == x.shape[-1]:
        return x * c + _rotate_half(x) * s
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat((xr * c + _rotate_half(xr) * s, xp), dim=-1)
