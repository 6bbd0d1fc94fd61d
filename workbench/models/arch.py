"""Per-architecture facts: where each canonical site lives in a Hugging Face module tree.

One :class:`ArchSpec` per family. The nnsight backend reads and writes sites through these
module paths; the raw stack runner (:mod:`workbench.models.stack`) calls the decoder layers
directly with each family's calling convention. TransformerLens's bridge has its own adapter
per architecture; tests check that the two agree site by site.

Supported: Llama-family (``llama``, ``mistral``, ``qwen2``; grouped-query attention),
GPT-2 (``gpt2``), GPT-NeoX / Pythia (``gpt_neox``; parallel or sequential residual).
Adding a family means adding a spec here and a row to the agreement tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import WorkbenchError

__all__ = ["ArchSpec", "ARCHS", "arch_for_config", "UnsupportedArchitecture"]


class UnsupportedArchitecture(WorkbenchError, ValueError):
    pass


@dataclass(frozen=True)
class ArchSpec:
    """Module paths (relative to the causal-LM module) and conventions of one family.

    ``layer_paths`` are relative to a decoder layer. ``qkv`` is ``"separate"`` (q_proj,
    k_proj, v_proj), ``"gpt2"`` (one Conv1D whose output splits into [q | k | v]) or
    ``"neox"`` (one Linear whose output is [head][q | k | v]).
    """

    family: str
    model_types: tuple[str, ...]
    embed: str
    pos_embed: str | None
    layers: str
    final_norm: str
    lm_head: str
    rotary: str | None
    attn: str
    q: str
    k: str | None
    v: str | None
    o: str
    ln1: str
    ln2: str
    mlp: str
    qkv: str
    o_is_conv1d: bool = False
    norm: str = "rms"

    # -- facts ----------------------------------------------------------------------
    def facts(self, config: Any) -> dict:
        if self.family == "gpt2":
            d_model, n_heads, n_layers = config.n_embd, config.n_head, config.n_layer
            n_kv = n_heads
            d_mlp = config.n_inner or 4 * d_model
            n_ctx = config.n_positions
            parallel = False
        else:
            d_model, n_heads = config.hidden_size, config.num_attention_heads
            n_layers = config.num_hidden_layers
            n_kv = getattr(config, "num_key_value_heads", None) or n_heads
            d_mlp = config.intermediate_size
            n_ctx = config.max_position_embeddings
            parallel = bool(getattr(config, "use_parallel_residual", False))
        d_head = getattr(config, "head_dim", None) or d_model // n_heads
        return dict(
            architecture=self.family, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv,
            d_model=d_model, d_head=d_head, d_mlp=d_mlp, d_vocab=config.vocab_size,
            n_ctx=n_ctx, parallel_attn_mlp=parallel, normalization=self.norm,
        )

    # -- module access ----------------------------------------------------------------
    @staticmethod
    def get(root: torch.nn.Module, path: str) -> torch.nn.Module:
        mod = root
        for part in path.split("."):
            mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
        return mod

    def layer_path(self, layer: int, rel: str | None = None) -> str:
        base = f"{self.layers}.{layer}"
        return base if rel is None else f"{base}.{rel}"

    # -- raw execution ----------------------------------------------------------------
    def embed_tokens(self, root: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        h = self.get(root, self.embed)(input_ids)
        if self.pos_embed is not None:
            h = h + self.get(root, self.pos_embed)(position_ids).to(h.device)
        return h

    # -- head geometry ----------------------------------------------------------------
    def W_O(self, o_module: torch.nn.Module, n_heads: int, d_head: int) -> torch.Tensor:
        """Output weights per head, ``[n_heads, d_head, d_model]``, from the o-projection module."""
        w = o_module.weight
        if self.o_is_conv1d:  # Conv1D stores [in, out]
            return w.reshape(n_heads, d_head, -1)
        return w.T.reshape(n_heads, d_head, -1)

    def split_qkv(self, native: torch.Tensor, n_heads: int, n_kv: int, d_head: int) -> tuple[torch.Tensor, ...]:
        """Split a fused qkv output into canonical q, k, v ``[b, pos, heads, d_head]``."""
        b, t = native.shape[:2]
        if self.qkv == "gpt2":
            q, k, v = native.split(n_heads * d_head, dim=-1)
            return (q.reshape(b, t, n_heads, d_head), k.reshape(b, t, n_kv, d_head),
                    v.reshape(b, t, n_kv, d_head))
        if self.qkv == "neox":
            q, k, v = native.reshape(b, t, n_heads, 3 * d_head).chunk(3, dim=-1)
            return q, k, v
        raise ValueError(f"{self.family} has separate q/k/v projections")

    def merge_qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, t = q.shape[:2]
        if self.qkv == "gpt2":
            return torch.cat([q.reshape(b, t, -1), k.reshape(b, t, -1), v.reshape(b, t, -1)], dim=-1)
        if self.qkv == "neox":
            return torch.cat([q, k, v], dim=-1).reshape(b, t, -1)
        raise ValueError(f"{self.family} has separate q/k/v projections")


LLAMA = ArchSpec(
    family="llama", model_types=("llama", "mistral", "qwen2"),
    embed="model.embed_tokens", pos_embed=None, layers="model.layers", final_norm="model.norm",
    lm_head="lm_head", rotary="model.rotary_emb", attn="self_attn", q="self_attn.q_proj",
    k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.o_proj", ln1="input_layernorm",
    ln2="post_attention_layernorm", mlp="mlp", qkv="separate", norm="rms",
)
GPT2 = ArchSpec(
    family="gpt2", model_types=("gpt2",),
    embed="transformer.wte", pos_embed="transformer.wpe", layers="transformer.h",
    final_norm="transformer.ln_f", lm_head="lm_head", rotary=None, attn="attn", q="attn.c_attn",
    k=None, v=None, o="attn.c_proj", ln1="ln_1", ln2="ln_2", mlp="mlp", qkv="gpt2",
    o_is_conv1d=True, norm="ln",
)
NEOX = ArchSpec(
    family="neox", model_types=("gpt_neox",),
    embed="gpt_neox.embed_in", pos_embed=None, layers="gpt_neox.layers",
    final_norm="gpt_neox.final_layer_norm", lm_head="lm_head",
    rotary="gpt_neox.rotary_emb", attn="attention", q="attention.query_key_value", k=None, v=None,
    o="attention.dense", ln1="input_layernorm", ln2="post_attention_layernorm", mlp="mlp",
    qkv="neox", norm="ln",
)

ARCHS: dict[str, ArchSpec] = {s.family: s for s in (LLAMA, GPT2, NEOX)}


def arch_for_config(config: Any, model: torch.nn.Module | None = None) -> ArchSpec:
    """The spec for an HF config (by ``model_type``), with a clear error when unsupported."""
    mt = getattr(config, "model_type", None)
    for spec in ARCHS.values():
        if mt in spec.model_types:
            if spec.family == "neox" and model is not None and hasattr(model, "embed_out"):
                # transformers < 5 named the NeoX unembedding embed_out
                import dataclasses

                spec = dataclasses.replace(spec, lm_head="embed_out")
            return spec
    supported = sorted(t for s in ARCHS.values() for t in s.model_types)
    raise UnsupportedArchitecture(
        f"model_type {mt!r} is not supported by the workbench yet (supported: {', '.join(supported)}). "
        "Add an ArchSpec in workbench/models/arch.py and a row in tests/test_backends_agree.py."
    )

