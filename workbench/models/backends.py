"""The two execution backends behind :class:`~workbench.models.hooked.HookedModel`.

A backend runs one forward pass over explicit ``input_ids`` / ``attention_mask`` /
``position_ids`` (optionally continuing a KV cache), calling, at each requested canonical
site, a function ``fn(x) -> x`` on the activation in canonical shape. Everything above that
(positions, interventions, captures, head outputs, generation) is shared code in the
HookedModel, so the two backends differ only in how they reach a site:

- ``TLBackend``: TransformerLens 4.x ``TransformerBridge`` hook points (``blocks.L.hook_*``).
- ``NNsightBackend``: nnsight 0.8 ``TransformersModel`` envoys on the HF module tree, visited in
  execution order (nnsight refuses out-of-order access).

Each backend checks that every requested hook fired exactly once in the forward: a hook that
fires zero or two times is a bug (a site the architecture never reaches, a module reused).
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..sites import Site, tl_hook_name
from . import compat
from .arch import ArchSpec

__all__ = ["Backend", "TLBackend", "NNsightBackend", "HookFiringError", "site_access", "plan_access",
           "apply_at_access"]

HookFn = Callable[[torch.Tensor], torch.Tensor]


class HookFiringError(RuntimeError):
    pass


def _check_counts(counts: Counter, expected: list[Site], backend: str) -> None:
    bad = {s.name: counts.get(s, 0) for s in expected if counts.get(s, 0) != 1}
    if bad:
        raise HookFiringError(
            f"{backend}: hooks must fire exactly once per forward, but {bad} (site: times fired). "
            "A site that never fires is not on this model's path (e.g. attention patterns under a "
            "fused attention kernel); one that fires twice belongs to a module called twice."
        )


class Backend:
    name: str

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
            hooks: dict[Site, HookFn], *, past_key_values: Any = None, logits_to_keep: int | None = None
            ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _model_kwargs(self, target: Any, attention_mask, position_ids, past_key_values, logits_to_keep) -> dict:
        """Keyword arguments of one forward of ``target`` (the cache under the name its forward declares)."""
        kw: dict[str, Any] = dict(attention_mask=attention_mask, position_ids=position_ids)
        kw.update(compat.cache_kwargs(target, past_key_values))
        if logits_to_keep:
            kw["logits_to_keep"] = int(logits_to_keep)
        return kw


class TLBackend(Backend):
    """Runs through a TransformerLens ``TransformerBridge`` (raw HF numerics, no folding)."""

    name = "tl"

    def __init__(self, bridge: Any, arch: ArchSpec | None = None):
        self.bridge = bridge
        self.arch = arch
        # TransformerLens 4.3's attention reads the KV cache as `past_key_values`; transformers >= 5.25's
        # decoder layers pass it as `cache` (see workbench.models.compat)
        self._alias_handles = compat.alias_bridge_cache_kwargs(bridge)

    def _hook_name(self, s: Site) -> str:
        if s.kind == "router" and self.arch is not None and self.arch.router_tl != "gate":
            return f"blocks.{s.layer}.mlp.{self.arch.router_tl}.hook_out"
        return tl_hook_name(s)

    def run(self, input_ids, attention_mask, position_ids, hooks, *, past_key_values=None, logits_to_keep=None):
        counts: Counter = Counter()

        def wrap(s: Site, fn: HookFn):
            def hook(x, hook=None):
                counts[s] += 1
                return fn(x)
            return hook

        fwd = [(self._hook_name(s), wrap(s, fn)) for s, fn in hooks.items()]
        kw = self._model_kwargs(self.bridge, attention_mask, position_ids, past_key_values, logits_to_keep)
        if past_key_values is not None:
            kw.pop("use_cache")  # the bridge asks for the cache itself when it is given one
        with self.bridge.hooks(fwd_hooks=fwd), warnings.catch_warnings():
            # the bridge passes the cache to the HF model as `past_key_values`, which transformers
            # >= 5.25 accepts under a deprecation notice on every call (renamed to `cache`)
            warnings.filterwarnings("ignore", message=r".*`past_key_values` is deprecated", category=FutureWarning)
            logits = self.bridge(input_ids, **kw)
        _check_counts(counts, list(hooks), "TransformerLens backend")
        return logits


@dataclass(frozen=True)
class _Access:
    """One place nnsight reads: a module's input or output (optionally one tuple element)."""

    order: tuple[int, int]
    path: str
    io: str  # "input" | "output"
    index: int | None


def site_access(arch: ArchSpec, s: Site) -> tuple[_Access, str]:
    """Where a site is read in the HF module tree, and how to turn it into canonical shape
    (``"plain"``, ``"heads"``: last dim split into heads, ``"fused"``: split from a fused qkv, ``"scaled"``:
    times the family's residual scale, which the layer applies to the module's output before adding it).

    The access order inside a block follows how HF runs it: resid_pre, q/k/v, z, attention output,
    its post-norm, resid_mid (input of the pre-MLP norm, or of the MLP), router, MLP output, its
    post-norm, resid_post.
    """
    L, lp, k = s.layer, arch.layer_path, s.kind
    if k == "resid_pre":
        return _Access((L, 0), lp(L), "input", None), "plain"
    if k == "resid_post":
        return _Access((L, 100), lp(L), "output", None), "plain"
    contribution = "scaled" if arch.residual_scale else "plain"  # what the layer adds: module output x scale
    if k == "attn_out":
        if arch.attn_post_norm:
            return _Access((L, 75), lp(L, arch.attn_post_norm), "output", None), contribution
        return _Access((L, 70), lp(L, arch.attn), "output", 0), contribution
    if k == "pattern":
        return _Access((L, 70), lp(L, arch.attn), "output", 1), "plain"
    if k == "resid_mid":
        if arch.parallel:
            raise ValueError(f"{arch.family} runs attention and MLP in parallel: it has no resid_mid")
        return _Access((L, 80), lp(L, arch.ln2 or arch.mlp), "input", None), "plain"
    if k == "router":
        if not arch.router:
            raise ValueError(f"{arch.family} has no mixture-of-experts router")
        return _Access((L, 85), lp(L, arch.router), "output", arch.router_index), "plain"
    if k == "mlp_out":
        if arch.mlp_post_norm:
            return _Access((L, 95), lp(L, arch.mlp_post_norm), "output", None), contribution
        return _Access((L, 90), lp(L, arch.mlp), "output", None), contribution
    if k == "z":
        return _Access((L, 50), lp(L, arch.o), "input", None), "heads"
    if k in ("q", "k", "v"):
        if arch.qkv == "separate":
            path = {"q": arch.q, "k": arch.k, "v": arch.v}[k]
            return _Access((L, {"q": 10, "k": 20, "v": 30}[k]), lp(L, path), "output", None), "heads"
        return _Access((L, 10), lp(L, arch.q), "output", None), "fused"
    raise ValueError(f"{s.kind!r} is not reached directly in the module tree")


def plan_access(arch: ArchSpec, hooks: dict[Site, HookFn]) -> list[tuple[tuple, list[tuple[_Access, list]]]]:
    """Group site functions by module access point, in execution order."""
    plan: dict[_Access, list] = {}
    for s, fn in hooks.items():
        acc, mode = site_access(arch, s)
        plan.setdefault(acc, []).append((s, mode, fn))
    groups: dict[tuple, list[tuple[_Access, list]]] = {}
    for acc, items in plan.items():
        groups.setdefault((acc.order, acc.path, acc.io), []).append((acc, items))
    for accs in groups.values():
        accs.sort(key=lambda a: -1 if a[0].index is None else a[0].index)
    return sorted(groups.items(), key=lambda kv: kv[0][0])


def apply_at_access(arch: ArchSpec, facts: Any, native: Any, items: list[tuple[Site, str, HookFn]],
                    index: int | None) -> Any:
    """Apply the site functions of one access point to its native value; return the new value."""
    f = facts
    if not isinstance(native, tuple):  # a module that returns one tensor (a router's bare gate Linear)
        index = None
    elem = native[index] if index is not None else native
    if isinstance(elem, tuple):  # decoder layers that return tuples
        elem = elem[0]
    new = elem
    fused = [it for it in items if it[1] == "fused"]
    for s, mode, fn in items:
        if mode == "plain":
            new = fn(new)
        elif mode == "scaled":
            scale = arch.residual_scale
            canon = new * scale
            out = fn(canon)
            if out is not canon:  # written: back to the module's own units (read-only hooks leave it untouched)
                new = out / scale
        elif mode == "heads":
            n = f.n_heads if s.kind in ("q", "z") else f.n_kv_heads
            canon = new.reshape(*new.shape[:-1], n, f.d_head)
            new = fn(canon).reshape(new.shape)
    if fused:
        q, k, v = arch.split_qkv(new, f.n_heads, f.n_kv_heads, f.d_head)
        parts = {"q": q, "k": k, "v": v}
        for s, _, fn in fused:
            parts[s.kind] = fn(parts[s.kind])
        new = arch.merge_qkv(parts["q"], parts["k"], parts["v"])
    if index is not None:
        return tuple(new if i == index else x for i, x in enumerate(native))
    if isinstance(native, tuple):
        return (new,) + tuple(native[1:])
    return new


class NNsightBackend(Backend):
    """Runs through an nnsight 0.8 ``TransformersModel`` wrapping the HF model."""

    name = "nnsight"

    def __init__(self, nn_model: Any, hf_model: torch.nn.Module, arch: ArchSpec, facts: Any):
        self.nn = nn_model
        self.hf = hf_model  # the module tree nnsight wraps (used for the firing counters)
        self.arch = arch
        self.facts = facts

    def _envoy(self, path: str) -> Any:
        env = self.nn
        for part in path.split("."):
            env = env[int(part)] if part.isdigit() else getattr(env, part)
        return env

    def run(self, input_ids, attention_mask, position_ids, hooks, *, past_key_values=None, logits_to_keep=None):
        ordered = plan_access(self.arch, hooks)
        counts: Counter = Counter()
        handles = []
        for (_order, path, _io), accs in ordered:
            here = [s for _acc, items in accs for s, _mode, _fn in items]

            def counter(module, args, output, here=here):
                for s in here:
                    counts[s] += 1
            handles.append(ArchSpec.get(self.hf, path).register_forward_hook(counter))
        kw = self._model_kwargs(self.hf, attention_mask, position_ids, past_key_values, logits_to_keep)
        result: dict[str, Any] = {}
        try:
            with self.nn.trace(input_ids, **kw):
                for (_, path, io), accs in ordered:
                    env = self._envoy(path)
                    native = env.output if io == "output" else env.input
                    new = native
                    for acc, items in accs:
                        new = apply_at_access(self.arch, self.facts, new, items, acc.index)
                    if io == "output":
                        env.output = new
                    else:
                        env.input = new
                result["logits"] = self.nn.output.logits
        finally:
            for h in handles:
                h.remove()
        _check_counts(counts, list(hooks), "nnsight backend")
        return result["logits"]
