"""Model families: where each canonical site lives in a Hugging Face module tree.

One :class:`ArchSpec` per loaded model, *derived* from TransformerLens 4.3's architecture adapter
for the model's config (its ``component_mapping`` names every family's embedding, blocks, norms,
attention projections, MLP and unembedding), so both backends, the stack runner and every method
read the same description and no family is hand-written twice. Hand-written code is kept for what
an adapter does not say and the workbench needs:

- the output layout of *fused* q/k/v projections (:data:`FUSED_QKV`: GPT-2's ``[q|k|v]`` Conv1D,
  GPT-NeoX's per-head ``[q|k|v]``, Phi-3's ``[q|k|v]`` with grouped KV heads; Falcon's, by config: multi-query
  ``[q|k|v]``, per-head, or per KV group);
- parallel attention and MLP (GPT-J, GPT-NeoX with ``use_parallel_residual``);
- final-logit soft-capping (Gemma 2) and logit scaling (Cohere, Granite), applied by :meth:`HookedModel.unembed`
  as the model does;
- embeddings and attention/MLP outputs scaled outside their modules (Granite's ``embedding_multiplier`` and
  ``residual_multiplier``, read from the adapter; AFMoE's muP input scaling, which the adapter omits):
  :meth:`HookedModel.embed` scales, ``attn_out``/``mlp_out`` are the scaled contributions and ``W_O`` includes
  the factor;
- mixture-of-experts families with dense layers too (AFMoE, ERNIE 4.5 MoE, Laguna): ``router`` sites exist on the
  routed layers (``ArchSpec.moe_layers``), and where a router's logits sit in its output tuple is found by running
  it once at load (:func:`~workbench.models.compat.router_output_layout`);
- sliding-window / local-global layers and per-layer-type rotary embeddings (Gemma 2/3), which the
  stack runner reproduces from ``config.layer_types``;
- mixture-of-experts MLPs, whose router is a readable site.

What the residual-stream sites mean on every family (what is *added* to the residual stream):

- ``attn_out``: the attention block's contribution: the output of the post-attention norm where the
  family has one (Gemma 2/3, OLMo 2), else the attention module's output;
- ``mlp_out``: likewise the output of the post-MLP norm where there is one, else the MLP output (for
  a mixture of experts: the routed, weighted sum of the chosen experts);
- ``resid_mid``: the residual stream between them (sequential blocks only): the input of the
  pre-MLP norm, or of the MLP where the family has no pre-MLP norm (OLMo 2);
- ``router``: the MoE router's logits ``[batch, pos, n_experts]`` (read-only: the routing is
  recomputed inside the block).

A family TransformerLens has no adapter for, or whose adapter names a module the model lacks, is
refused from its config with :class:`UnsupportedArchitecture` (before any weights are read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import WorkbenchError

__all__ = ["ArchSpec", "arch_for_config", "text_config", "UnsupportedArchitecture", "FUSED_QKV", "support_report"]


class UnsupportedArchitecture(WorkbenchError, ValueError):
    pass


# Output layout of fused q/k/v projections, by model_type. Families with a fused projection not
# listed here still run (residual, attention-output, z and pattern sites); their q/k/v sites do not.
FUSED_QKV = {"gpt2": "gpt2", "gpt_neox": "neox", "phi3": "concat"}


def _fused_layout(mt: str, c: Any) -> str:
    """The fused q/k/v layout of a family whose layout depends on its config (Falcon), else :data:`FUSED_QKV`'s."""
    if mt == "falcon":
        if getattr(c, "new_decoder_architecture", False):
            return "grouped"  # per KV group: its queries, then its key and value
        return "concat" if getattr(c, "multi_query", False) else "neox"
    return FUSED_QKV.get(mt, "fused")


def text_config(config: Any) -> Any:
    """The config of the text decoder (Gemma 3 and other multimodal checkpoints nest it)."""
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


@dataclass(frozen=True)
class ArchSpec:
    """Module paths (relative to the causal-LM module) and conventions of one model.

    Per-layer paths (``attn``, ``q``... ``mlp``) are relative to a decoder layer; ``None`` where the
    family has no such module (OLMo 2 has no pre-attention norm; GPT-J no pre-MLP norm). ``qkv`` is
    ``"separate"`` (q, k, v are separate projections) or a fused layout from :data:`FUSED_QKV`
    (then ``q`` is the fused projection and ``k``/``v`` are ``None``), or ``"fused"`` when the layout
    is unknown (no q/k/v sites).
    """

    family: str
    hf_architecture: str
    embed: str
    pos_embed: str | None
    layers: str
    final_norm: str
    lm_head: str
    rotary: str | None
    attn: str
    q: str | None
    k: str | None
    v: str | None
    o: str
    ln1: str | None
    ln2: str | None
    mlp: str
    qkv: str
    attn_post_norm: str | None = None
    mlp_post_norm: str | None = None
    router: str | None = None
    router_tl: str = "gate"  # the router's key under the MLP in TransformerLens's bridge
    router_layout: tuple[tuple[str, int], ...] | None = None
    moe_layers: tuple[int, ...] | None = None  # layers whose MLP is routed, where others are dense; None: all
    norm: str = "rms"
    norm_offset: bool = False
    parallel: bool = False
    final_logit_softcap: float | None = None
    logit_scale: float | None = None
    embed_scale: float | None = None
    embed_norm: str | None = None  # a norm between the embedding and layer 0 (ModernBERT decoder, NanoChat)
    residual_scale: float | None = None
    layer_types: tuple[str, ...] | None = None
    quirks: tuple[str, ...] = field(default_factory=tuple)

    # -- facts ----------------------------------------------------------------------
    def facts(self, config: Any) -> dict:
        c = text_config(config)
        d_model = _first(c, "hidden_size", "n_embd", "d_model")
        n_heads = _first(c, "num_attention_heads", "n_head")
        n_layers = _first(c, "num_hidden_layers", "n_layer")
        n_kv = getattr(c, "num_key_value_heads", None) or n_heads
        if self.qkv == "concat" and self.family == "falcon":  # multi-query: one KV head whatever num_kv_heads says
            n_kv = 1
        d_mlp = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * d_model
        n_ctx = _first(c, "max_position_embeddings", "n_positions", "n_ctx")
        d_head = getattr(c, "head_dim", None) or d_model // n_heads
        n_experts = getattr(c, "num_local_experts", None) or getattr(c, "num_experts", None) or \
            getattr(c, "moe_num_experts", None) or 0
        return dict(
            architecture=self.family, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
            d_model=d_model, d_head=d_head, d_mlp=d_mlp, d_vocab=c.vocab_size,
            n_ctx=n_ctx, parallel_attn_mlp=self.parallel, normalization=self.norm,
            n_experts=int(n_experts) if self.router else 0,
            experts_per_token=int(getattr(c, "num_experts_per_tok", 0) or getattr(c, "moe_k", 0) or 0)
            if self.router else 0,
        )

    @property
    def is_moe(self) -> bool:
        return self.router is not None

    def has_router(self, layer: int) -> bool:
        """Whether ``layer``'s MLP is a routed mixture of experts (some MoE families keep dense layers first)."""
        return self.router is not None and (self.moe_layers is None or layer in self.moe_layers)

    @property
    def router_index(self) -> int:
        """The element of the router's output tuple that holds its logits (found in the installed transformers by
        :func:`~workbench.models.compat.router_output_layout` when the model was given; else the first)."""
        return dict(self.router_layout or ()).get("logits", 0)

    # -- module access ----------------------------------------------------------------
    @staticmethod
    def get(root: torch.nn.Module, path: str) -> torch.nn.Module:
        mod = root
        for part in path.split("."):
            mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
        return mod

    @staticmethod
    def has(root: torch.nn.Module, path: str) -> bool:
        try:
            ArchSpec.get(root, path)
            return True
        except (AttributeError, IndexError, TypeError):
            return False

    def layer_path(self, layer: int, rel: str | None = None) -> str:
        base = f"{self.layers}.{layer}"
        return base if rel is None else f"{base}.{rel}"

    def layer_rels(self) -> dict[str, str]:
        """Role -> path (relative to a layer) of every module the family has."""
        roles = dict(attn=self.attn, q=self.q, k=self.k, v=self.v, o=self.o, ln1=self.ln1, ln2=self.ln2,
                     mlp=self.mlp, attn_post_norm=self.attn_post_norm, mlp_post_norm=self.mlp_post_norm,
                     router=self.router)
        return {k: v for k, v in roles.items() if v}

    def layer_type(self, layer: int) -> str:
        return self.layer_types[layer] if self.layer_types else "full_attention"

    # -- head geometry ----------------------------------------------------------------
    @staticmethod
    def W_O(o_module: torch.nn.Module, n_heads: int, d_head: int) -> torch.Tensor:
        """Output weights per head, ``[n_heads, d_head, d_model]``, from the o-projection module."""
        w = o_module.weight
        if type(o_module).__name__ == "Conv1D":  # GPT-2's Conv1D stores [in, out]
            return w.reshape(n_heads, d_head, -1)
        return w.T.reshape(n_heads, d_head, -1)

    def split_qkv(self, native: torch.Tensor, n_heads: int, n_kv: int, d_head: int) -> tuple[torch.Tensor, ...]:
        """Split a fused qkv output into canonical q, k, v ``[b, pos, heads, d_head]``."""
        b, t = native.shape[:2]
        if self.qkv in ("gpt2", "concat"):
            q, k, v = native.split([n_heads * d_head, n_kv * d_head, n_kv * d_head], dim=-1)
            return (q.reshape(b, t, n_heads, d_head), k.reshape(b, t, n_kv, d_head),
                    v.reshape(b, t, n_kv, d_head))
        if self.qkv == "neox":
            q, k, v = native.reshape(b, t, n_heads, 3 * d_head).chunk(3, dim=-1)
            return q, k, v
        if self.qkv == "grouped":
            g = native.reshape(b, t, n_kv, n_heads // n_kv + 2, d_head)
            return g[..., :-2, :].reshape(b, t, n_heads, d_head), g[..., -2, :], g[..., -1, :]
        raise ValueError(f"{self.family}: q/k/v sites need a known q/k/v layout (this family's is {self.qkv!r})")

    def merge_qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, t = q.shape[:2]
        if self.qkv in ("gpt2", "concat"):
            return torch.cat([q.reshape(b, t, -1), k.reshape(b, t, -1), v.reshape(b, t, -1)], dim=-1)
        if self.qkv == "neox":
            return torch.cat([q, k, v], dim=-1).reshape(b, t, -1)
        if self.qkv == "grouped":
            n_kv = k.shape[2]
            g = q.reshape(b, t, n_kv, q.shape[2] // n_kv, q.shape[3])
            return torch.cat([g, k.unsqueeze(3), v.unsqueeze(3)], dim=3).reshape(b, t, -1)
        raise ValueError(f"{self.family}: q/k/v sites need a known q/k/v layout (this family's is {self.qkv!r})")

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise :class:`UnsupportedArchitecture` naming every path this spec names that ``model`` lacks."""
        missing = [p for p in (self.embed, self.layers, self.final_norm, self.lm_head, self.pos_embed, self.rotary,
                               self.embed_norm) if p and not self.has(model, p)]
        if not missing:
            layer0 = self.get(model, self.layer_path(0))
            missing = [f"{self.layer_path(0)}.{r}" for role, r in self.layer_rels().items()
                       if role != "router" and not self.has(layer0, r)]
        if not missing and self.router and not any(self.has(layer, self.router) for layer in self.get(model, self.layers)):
            missing = [f"{self.layers}.*.{self.router}"]
        layers = self.get(model, self.layers) if self.has(model, self.layers) else []
        if missing and layers and not self.has(layers[0], self.attn) and any(self.has(la, self.attn) for la in layers):
            raise UnsupportedArchitecture(
                f"{self.hf_architecture}: some layers have no attention module ({self.attn}): a hybrid of attention "
                "and linear-attention or state-space layers, which the workbench does not support"
            )
        if missing:
            raise UnsupportedArchitecture(
                f"{self.hf_architecture}: the module tree lacks {', '.join(missing)}, which TransformerLens's adapter for "
                "this family names; this checkpoint's layout is not supported (a custom or remote-code variant?)"
            )


def _first(c: Any, *names: str) -> Any:
    for n in names:
        v = getattr(c, n, None)
        if v is not None:
            return v
    raise UnsupportedArchitecture(f"{type(c).__name__} has none of {', '.join(names)}; not a decoder-only LM config")


def _find_rotary(model: torch.nn.Module | None, layers: str) -> str | None:
    """The model-level rotary-embedding module beside the layers, where the adapter names none (GPT-J)."""
    if model is None:
        return None
    base = layers.rsplit(".", 1)[0]
    for name in ("rotary_emb", "rotary_embedding"):
        path = f"{base}.{name}" if base else name
        if ArchSpec.has(model, path):
            return path
    return None


def arch_for_config(config: Any, model: torch.nn.Module | None = None) -> ArchSpec:
    """The spec of a model from its config (and, when given, checked against its module tree).

    Derived from TransformerLens's adapter for the config's architecture; raises
    :class:`UnsupportedArchitecture` with what is missing when there is none or it cannot be used.
    """
    from . import compat

    c = text_config(config)
    mt = getattr(c, "model_type", None) or getattr(config, "model_type", None)
    comps, hf_arch, flags = compat.tl_components(config)
    attn_cfg = getattr(c, "attn_config", None)
    alibi = mt == "bloom" or bool(getattr(c, "alibi", False)) or bool(
        attn_cfg.get("alibi") if isinstance(attn_cfg, dict) else getattr(attn_cfg, "alibi", False))
    if alibi:
        raise UnsupportedArchitecture(
            f"{hf_arch} ({mt}) uses ALiBi attention biases, which the model's forward builds and hands to every layer; "
            "the workbench runs layers on their own (stack runner: patching engine, steering fast path, load-time "
            "self-check) and does not build them"
        )
    if "blocks" in comps and "blocks.attn" in comps and "blocks.mlp" not in comps and "blocks.mlp.out" in comps:
        raise UnsupportedArchitecture(
            f"{hf_arch} ({mt}) computes its MLP inline in the decoder layer ({comps['blocks.mlp.out'][0]} with no MLP "
            "module around it), so mlp_out has no module to hook and the patching engine cannot rerun the MLP alone"
        )
    if "blocks" not in comps or "blocks.attn" not in comps or "blocks.mlp" not in comps:
        raise UnsupportedArchitecture(
            f"{hf_arch} ({mt}) is not a decoder-only transformer the workbench can hook: its TransformerLens adapter "
            f"has no attention/MLP blocks (components: {', '.join(sorted(comps)[:12])})"
        )
    name = {k: v[0] for k, v in comps.items()}
    kind = {k: v[1] for k, v in comps.items()}
    if "ln_final" not in name:
        raise UnsupportedArchitecture(
            f"{hf_arch} ({mt}) has no final norm before the unembedding (GPT-1 applies none); the workbench's "
            "unembedding, logit lens and weight folding assume one"
        )
    attn = name["blocks.attn"]
    quirks = []
    if "blocks.attn.qkv" in name:
        qkv = _fused_layout(str(mt), c)
        q, k, v = f"{attn}.{name['blocks.attn.qkv']}", None, None
        quirks.append(f"fused q/k/v ({qkv})")
    else:
        if not all(f"blocks.attn.{x}" in name for x in "qkv"):
            if getattr(c, "kv_lora_rank", None):
                raise UnsupportedArchitecture(
                    f"{hf_arch}: multi-head latent attention (keys and values decompressed from a low-rank latent, "
                    "kv_lora_rank): there are no per-head q/k/v projections for the workbench's sites")
            raise UnsupportedArchitecture(f"{hf_arch}: its adapter names no q/k/v projections")
        qkv = "separate"
        q, k, v = (f"{attn}.{name[f'blocks.attn.{x}']}" for x in "qkv")
    if "blocks.attn.o" not in name:
        raise UnsupportedArchitecture(f"{hf_arch}: its adapter names no attention output projection")
    mlp = name["blocks.mlp"]
    router = None
    router_tl = "gate"
    if "MoE" in kind["blocks.mlp"]:
        # the router: the MoE's `gate`, else its one submodule bridged as a router (GPT-OSS names it `router`),
        # else the router's gate Linear where the adapter names only that (AFMoE's `router_gate`)
        routers = [k for k in name if k.startswith("blocks.mlp.") and k.count(".") == 2
                   and kind[k] == "MoERouterBridge"] or [k for k in ("blocks.mlp.router_gate",) if k in name]
        key = "blocks.mlp.gate" if "blocks.mlp.gate" in name else routers[0] if len(routers) == 1 else None
        if key is None:
            raise UnsupportedArchitecture(f"{hf_arch}: a mixture-of-experts MLP whose router the adapter does not name "
                                          "as a router")
        router, router_tl = f"{mlp}.{name[key]}", key.rsplit(".", 1)[1]
        quirks.append("mixture of experts")
    parallel = getattr(c, "use_parallel_residual", None)
    if parallel is None:
        parallel = "Parallel" in kind["blocks"]
    if parallel:
        quirks.append("parallel attention and MLP")
    rotary = name.get("rotary_emb") or _find_rotary(model, name["blocks"])
    softcap = getattr(c, "final_logit_softcapping", None)
    if softcap:
        quirks.append("final-logit soft-capping")
    logit_scale = getattr(c, "logit_scale", None) if mt in ("cohere", "cohere2", "cohere2_moe") else None
    if str(mt).startswith("granite") and getattr(c, "logits_scaling", None) not in (None, 0):
        logit_scale = 1.0 / float(c.logits_scaling)  # Granite divides the logits (TransformerLens: in a method)
    if logit_scale not in (None, 1, 1.0):
        quirks.append("logit scaling")
    embed_scale = flags.get("embed_scale")
    if mt == "afmoe" and getattr(c, "mup_enabled", False):  # muP input scaling in the model's forward, which
        embed_scale = (embed_scale or 1.0) * float(c.hidden_size) ** 0.5  # TransformerLens 4.3's adapter omits
    if embed_scale:
        quirks.append("scaled embeddings")
    # a norm between the embedding and layer 0: named by the adapter (``embed_ln``), or NanoChat's, which reuses
    # its (parameter-free) final norm and which TransformerLens 4.3's adapter omits
    embed_norm = name.get("embed_ln") or (name["ln_final"] if mt == "nanochat" else None)
    if embed_norm:
        quirks.append("normalised embeddings")
    if "prediction_head" in name:
        raise UnsupportedArchitecture(
            f"{hf_arch} ({mt}) puts a prediction head ({name['prediction_head']}: dense, activation, norm) between the "
            "final norm and the unembedding; the workbench's unembedding-based methods (logit lens, direct logit "
            "attribution, the patching engine's logits) assume the unembedding is linear after the final norm"
        )
    if flags.get("residual_scale"):
        quirks.append("scaled residual contributions")
    if getattr(c, "attn_logit_softcapping", None):
        quirks.append("attention soft-capping")
    if "blocks.ln1_post" in name or "blocks.ln2_post" in name:
        quirks.append("norms after attention/MLP")
    if "blocks.attn.q_norm" in name:
        quirks.append("q/k norms")
    layer_types = tuple(getattr(c, "layer_types", None) or ()) or None
    if layer_types and len(set(layer_types)) > 1 or (layer_types and "full_attention" not in layer_types):
        quirks.append("sliding-window/local attention layers")
    if getattr(c, "tie_word_embeddings", False):
        quirks.append("tied embeddings")
    if flags["norm_offset"]:
        quirks.append("(1 + w) RMSNorm")
    spec = ArchSpec(
        family=str(mt), hf_architecture=hf_arch, embed=name["embed"], pos_embed=name.get("pos_embed"),
        layers=name["blocks"], final_norm=name["ln_final"], lm_head=name["unembed"], rotary=rotary,
        attn=attn, q=q, k=k, v=v, o=f"{attn}.{name['blocks.attn.o']}", ln1=name.get("blocks.ln1"),
        ln2=None if parallel else name.get("blocks.ln2"), mlp=mlp, qkv=qkv,
        attn_post_norm=name.get("blocks.ln1_post"), mlp_post_norm=name.get("blocks.ln2_post"), router=router,
        router_tl=router_tl,
        norm="rms" if "RMS" in kind.get("ln_final", "") else "ln", norm_offset=flags["norm_offset"],
        parallel=bool(parallel),
        final_logit_softcap=float(softcap) if softcap else None,
        logit_scale=float(logit_scale) if logit_scale not in (None, 1, 1.0) else None,
        embed_scale=embed_scale, embed_norm=embed_norm, residual_scale=flags.get("residual_scale"), layer_types=layer_types,
        quirks=tuple(quirks),
    )
    if model is not None:
        spec.check_model(model)
        if router:
            import dataclasses

            layers = spec.get(model, spec.layers)
            moe = tuple(i for i, layer in enumerate(layers) if spec.has(layer, router))
            if len(moe) < len(layers):  # dense layers too (e.g. the first ones): the router sites are the MoE layers'
                spec = dataclasses.replace(spec, moe_layers=moe, quirks=spec.quirks + ("dense and MoE layers",))
            facts = spec.facts(config)
            layout = compat.router_output_layout(spec.get(model, spec.layer_path(moe[0], router)), facts["d_model"],
                                                 facts["n_experts"])
            if layout:
                spec = dataclasses.replace(spec, router_layout=tuple(sorted(layout.items())))
    return spec


def support_report(config: Any) -> dict:
    """Whether the workbench supports a model, from its config alone: ``{"supported", "family", "quirks",
    "missing"}`` (``missing`` lists what does not work when it is partly supported)."""
    try:
        spec = arch_for_config(config)
    except UnsupportedArchitecture as e:
        return {"supported": False, "family": getattr(text_config(config), "model_type", None), "quirks": [],
                "missing": [str(e)]}
    missing = []
    if spec.qkv == "fused":
        missing.append("q/k/v sites (fused projection of unknown layout)")
    return {"supported": True, "family": spec.family, "architecture": spec.hf_architecture,
            "quirks": list(spec.quirks), "missing": missing}
