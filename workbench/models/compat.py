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
    "router_output_layout", "align_bridge_routers",
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
                cache: Any, layer_type: str = "full_attention") -> Any:
    """The attention mask a decoder layer of ``layer_type`` expects for ``hidden`` after ``cache``.

    Built by transformers' own mask functions for the model's attention implementation (eager: an
    additive float mask; SDPA: a boolean mask or ``None`` when causal alone suffices): ``full_attention``
    (``create_causal_mask``), ``sliding_attention`` (``create_sliding_window_causal_mask``, the
    config's ``sliding_window``), ``chunked_attention`` (``create_chunked_causal_mask``).
    """
    from transformers import masking_utils

    fns = {"full_attention": "create_causal_mask", "sliding_attention": "create_sliding_window_causal_mask",
           "chunked_attention": "create_chunked_causal_mask"}
    if layer_type not in fns:
        raise NotImplementedError(f"attention layers of type {layer_type!r} are not supported by the stack runner "
                                  f"(supported: {', '.join(fns)})")
    fn = getattr(masking_utils, fns[layer_type])
    kw = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask, "position_ids": position_ids}
    kw[cache_kwarg(fn)] = cache
    return fn(**kw)


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


# ----------------------------------------------------------------------------------- TransformerLens adapters
def tl_components(config: Any) -> tuple[dict[str, tuple[str, str]], str, dict[str, Any]]:
    """TransformerLens 4.3's component mapping for a config: ``{"blocks.attn.q": (module name, bridge type)}``
    (names relative to their parent component), the HF architecture class name, and the adapter's flags the
    workbench uses (``norm_offset``: RMSNorm scales by ``1 + w``, as Gemma's does; ``embed_scale`` /
    ``residual_scale``: factors the model applies to the embeddings / to each attention and MLP output before
    adding it to the residual stream, outside those modules, as Granite does; ``None`` when 1).

    Read from the adapter TransformerLens itself would use for this checkpoint, without loading weights.
    """
    import copy

    from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
    from transformer_lens.model_bridge.sources.transformers import source as tl_source

    from .arch import UnsupportedArchitecture

    cfg = copy.deepcopy(config)
    if not getattr(cfg, "architectures", None):
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(getattr(cfg, "model_type", None))
        if name is not None:
            cfg.architectures = [name]
    try:
        hf_arch = tl_source.determine_architecture_from_hf_config(cfg)
        bridge_cfg = tl_source.build_bridge_config_from_hf(cfg, hf_arch, "workbench", torch.float32)
        adapter = ArchitectureAdapterFactory.select_architecture_adapter(bridge_cfg)
    except Exception as e:  # noqa: BLE001 - TransformerLens raises ValueError/KeyError/AttributeError here
        raise UnsupportedArchitecture(
            f"model_type {getattr(cfg, 'model_type', None)!r} ({', '.join(cfg.architectures or []) or 'no architecture'}) "
            f"has no TransformerLens 4.3 adapter the workbench can use ({type(e).__name__}: {str(e)[:160]}). "
            "`workbench models` lists what is supported."
        ) from None
    out: dict[str, tuple[str, str]] = {}

    def walk(mapping: Any, prefix: str) -> None:
        for key, comp in mapping.items():
            nm = getattr(comp, "name", None)
            if nm is not None:
                out[prefix + key] = (nm, type(comp).__name__)
            sub = getattr(comp, "submodules", None)
            if sub:
                walk(sub, prefix + key + ".")
    walk(adapter.component_mapping or {}, "")
    mapping = adapter.component_mapping or {}

    def scale(key: str, attr: str) -> float | None:  # a contribution scale the adapter's bridge applies at its hook
        v = getattr(mapping.get(key), attr, None)
        return float(v) if v is not None and float(v) != 1.0 else None

    flags = {"norm_offset": bool(getattr(adapter.cfg, "rmsnorm_uses_offset", False)),
             # Granite multiplies the embeddings and each block's attention and MLP outputs in the model's and the
             # layer's forward (not inside the modules), and TransformerLens's hooks expose the scaled values
             "embed_scale": scale("embed", "_output_contribution_scale"),
             "residual_scale": scale("blocks", "residual_contribution_scale")}
    return out, hf_arch, flags


# ----------------------------------------------------------------------------------- MoE routers
def router_output_layout(router: torch.nn.Module, d_model: int, n_experts: int) -> dict[str, int] | None:
    """Where a mixture-of-experts router puts its logits (and top-k weights and indices) in the tuple it returns,
    found by running it on a few random vectors: ``{"logits": i, "weights": j, "indices": k}`` (``weights`` /
    ``indices`` absent when not found), or ``None`` when it returns one tensor or the layout is ambiguous.

    transformers has reordered these tuples between releases (GraniteMoe's router returned the indices first, now
    the logits), and TransformerLens 4.3's adapters hard-code one order; the installed code's answer is the truth.
    """
    try:
        p = next(router.parameters())
        dev = execution_device(router)
        x = torch.randn(3, d_model, generator=torch.Generator().manual_seed(0)).to(device=dev, dtype=p.dtype)
        with torch.no_grad():
            out = router(x)
    except Exception:  # noqa: BLE001 - a router that cannot run alone keeps the adapter's layout
        return None
    if not isinstance(out, tuple):
        return None
    floats = [i for i, t in enumerate(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    logits = [i for i in floats if out[i].shape[-1] == n_experts]
    if len(logits) != 1:
        return None
    layout = {"logits": logits[0]}
    weights = [i for i in floats if i != logits[0] and out[i].shape[-1] < n_experts]
    indices = [i for i, t in enumerate(out) if isinstance(t, torch.Tensor) and not t.is_floating_point()
               and not t.is_complex() and t.dim() == out[logits[0]].dim()]
    if len(weights) == 1:
        layout["weights"] = weights[0]
    if len(indices) == 1:
        layout["indices"] = indices[0]
    return layout


def align_bridge_routers(bridge: torch.nn.Module, layout: dict[str, int] | None) -> int:
    """Point a TransformerLens bridge's router components at the tuple elements ``layout`` names (what
    :func:`router_output_layout` found in the installed transformers), where the adapter's hard-coded indices
    differ. Returns how many routers were changed."""
    if not layout:
        return 0
    from transformer_lens.model_bridge.generalized_components.moe import MoERouterBridge

    changed = 0
    for m in bridge.modules():
        if not isinstance(m, MoERouterBridge):
            continue
        want = {"logits_index": layout["logits"], "weights_index": layout.get("weights"),
                "indices_index": layout.get("indices")}
        if m.logits_index != want["logits_index"] or (
                want["weights_index"] is not None and m.weights_index is not None
                and m.weights_index != want["weights_index"]) or (
                want["indices_index"] is not None and m.indices_index is not None
                and m.indices_index != want["indices_index"]):
            m.logits_index = want["logits_index"]
            if m.weights_index is not None and want["weights_index"] is not None:
                m.weights_index = want["weights_index"]
            if m.indices_index is not None and want["indices_index"] is not None:
                m.indices_index = want["indices_index"]
            changed += 1
    return changed


# ----------------------------------------------------------------------------------- multimodal checkpoints
def text_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The causal-LM text decoder of a checkpoint whose config nests a text config (Gemma 3, ...).

    Returns ``model`` itself for a text-only model. Otherwise builds the text family's own
    ``*ForCausalLM`` (e.g. ``Gemma3ForCausalLM``) around the loaded language model and ``lm_head``,
    sharing their weights (no copy), and drops the rest (the vision tower): the workbench studies the
    language model, and TransformerLens boots a multimodal checkpoint with its processor (4.3 even
    pip-installs torchvision into the running environment when that processor does not load).
    """
    from transformers import AutoModelForCausalLM

    config = model.config
    get = getattr(config, "get_text_config", None)
    text = get() if callable(get) else config
    if text is config:
        return model
    try:
        cls = AutoModelForCausalLM._model_mapping[type(text)]
    except KeyError:
        from .arch import UnsupportedArchitecture

        raise UnsupportedArchitecture(
            f"{type(model).__name__}'s text decoder ({getattr(text, 'model_type', type(text).__name__)}) has no "
            "causal-LM class in transformers; it cannot be studied as a language model"
        ) from None
    with torch.device("meta"):
        lm = cls(text)
    base_attr = lm.base_model_prefix
    base_cls = type(getattr(lm, base_attr))
    found = [m for m in model.modules() if type(m) is base_cls]
    head = model.get_output_embeddings()
    if len(found) != 1 or head is None:
        from .arch import UnsupportedArchitecture

        raise UnsupportedArchitecture(f"cannot find the {base_cls.__name__} and output embedding inside "
                                      f"{type(model).__name__} to study its text decoder")
    setattr(lm, base_attr, found[0])
    lm.set_output_embeddings(head)
    for attr in ("hf_device_map", "generation_config", "name_or_path"):
        if hasattr(model, attr):
            setattr(lm, attr, getattr(model, attr))
    lm.config._name_or_path = getattr(config, "_name_or_path", "")
    lm.config.architectures = [cls.__name__]  # TransformerLens picks its adapter by this name
    return lm.eval()


# ----------------------------------------------------------------------------------- models split over devices
def execution_device(module: torch.nn.Module, default: Any = None) -> torch.device:
    """Where ``module`` computes: its parameters' device, or, for weights that accelerate offloads to the CPU
    or disk (parameters on the meta device), the execution device of accelerate's hook on it."""
    for t in module.parameters():
        if t.device.type != "meta":
            return t.device
        hook = getattr(module, "_hf_hook", None)
        dev = getattr(hook, "execution_device", None)
        if dev is not None:
            return torch.device(dev) if not isinstance(dev, torch.device) else dev
        break
    for sub in module.modules():  # a module whose own hook sits on a child
        hook = getattr(sub, "_hf_hook", None)
        dev = getattr(hook, "execution_device", None)
        if dev is not None:
            return torch.device(dev) if not isinstance(dev, torch.device) else dev
    return torch.device(default) if default is not None else torch.device("cpu")


def state_tensors(model: torch.nn.Module) -> list[tuple[str, Callable[[], torch.Tensor]]]:
    """``(name, get)`` for every entry of ``model.state_dict()``, sorted by name; ``get()`` returns the tensor,
    read back from accelerate's offload map for weights offloaded to the CPU or disk (which the state dict
    shows on the meta device). The weights hash of a model split over devices then equals one device's."""
    out: list[tuple[str, Callable[[], torch.Tensor]]] = []
    for key, t in model.state_dict().items():
        if t.device.type != "meta":
            out.append((key, (lambda t=t: t)))
            continue
        mod_name, _, local = key.rpartition(".")
        wm = getattr(getattr(model.get_submodule(mod_name), "_hf_hook", None), "weights_map", None)
        if wm is None:
            raise ValueError(f"{key} is on the meta device and no offload map holds it; the model is not fully loaded")
        out.append((key, (lambda wm=wm, local=local: wm[local])))
    return sorted(out, key=lambda kv: kv[0])


def is_dispatched(model: torch.nn.Module) -> bool:
    """Whether accelerate placed ``model`` over several devices (or offloaded part of it)."""
    dm = getattr(model, "hf_device_map", None)
    return bool(dm) and (len(set(map(str, dm.values()))) > 1 or any(str(v) in ("cpu", "disk") for v in dm.values())
                         and any(p.device.type == "meta" for p in model.parameters()))
