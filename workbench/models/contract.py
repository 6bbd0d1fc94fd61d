"""The public model contract of :class:`~workbench.models.hooked.HookedModel`: what circuits, probe and steering need
from a model (its config, modules by path and role, embedding, rotary embeddings, norms, unembedding) as documented
methods, so no package reads a model's private attributes; and the load-time self-check."""

from __future__ import annotations

from typing import Any

import torch

from workbench.errors import WorkbenchError

from . import compat


class ModelSelfCheckError(WorkbenchError, RuntimeError):
    """Cached decoding or the stack runner disagrees with an uncached forward pass (an incompatible library
    version; see ``HookedModel.self_check``)."""


class ModelContractMixin:
    """The model contract and ``self_check``; mixed into :class:`~workbench.models.hooked.HookedModel`."""

    # What circuits, probe and steering use besides forward / run_with_cache / generate / gradients
    # (listed in workbench.models.protocol.Model): the original modules by role, the config, weights,
    # norms, unembedding, embeddings, rotary embeddings and padding.
    @property
    def hf_config(self) -> Any:
        """The (text) config of the model, as transformers built it."""
        return self._hf_config

    def module(self, path: str) -> torch.nn.Module:
        """The original module at an HF path the family description names (a layer, or one of a layer's
        modules: see :meth:`layer_module`), as it was before a backend wrapped the tree."""
        if path not in self._refs:
            raise KeyError(f"no module {path!r} in {self.name}'s description (known: a layer, or a layer's "
                           f"{', '.join(self.arch.layer_rels())})")
        return self._refs[path]

    def layer_module(self, layer: int, role: str) -> torch.nn.Module | None:
        """A layer's module by role (``attn``, ``q``, ``k``, ``v``, ``o``, ``ln1``, ``ln2``, ``mlp``,
        ``attn_post_norm``, ``mlp_post_norm``, ``router``); ``None`` where this family has no such module
        (an OLMo 2 layer has no ``ln1``; ``k``/``v`` are ``None`` under a fused q/k/v projection)."""
        known = ("attn", "q", "k", "v", "o", "ln1", "ln2", "mlp", "attn_post_norm", "mlp_post_norm", "router")
        if role not in known:
            raise KeyError(f"unknown module role {role!r}; roles: {', '.join(known)}")
        return self._roles[layer].get(role)

    def W_O(self, layer: int) -> torch.Tensor:
        """``[n_heads, d_head, d_model]`` output weights of layer ``layer`` (``head_out = z[h] @ W_O[h]``), times the
        family's residual scale where the layer scales the attention output before adding it (Granite)."""
        W = self.arch.W_O(self._o_modules[layer], self.facts.n_heads, self.facts.d_head)
        return W * self.arch.residual_scale if self.arch.residual_scale else W

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding ``[d_model, d_vocab]``."""
        return self._lm_head.weight.T

    @property
    def W_E(self) -> torch.Tensor:
        """Token embedding ``[d_vocab, d_model]``."""
        return self._embed.weight

    @property
    def final_norm_module(self) -> torch.nn.Module:
        """The final LayerNorm/RMSNorm module (its weights: the lens folds them into the unembedding)."""
        return self._final_norm

    @property
    def unembed_module(self) -> torch.nn.Module:
        """The unembedding (``lm_head``) module."""
        return self._lm_head

    def norm_weight(self, module: torch.nn.Module | None) -> torch.Tensor:
        """The elementwise scale a norm module applies after normalising, float32 on the CPU: its weight, or
        ``1 + weight`` for families whose RMSNorm is offset (Gemma), or ones for a missing module or one
        without a weight (weight folding in the lens and the OV/QK circuits reads this)."""
        d = self.facts.d_model
        w = getattr(module, "weight", None) if module is not None else None
        if w is None:
            return torch.ones(d)
        w = w.detach().float().cpu()
        return 1.0 + w if self.arch.norm_offset else w

    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The residual stream entering layer 0: token embeddings (scaled where the family scales them: inside the
        embedding module (Gemma) or in the model's forward (Granite)), plus learned position embeddings where the
        family has them, through the embedding norm where the family has one (NanoChat)."""
        h = self._embed(input_ids.to(self.device))
        if self.arch.embed_scale:
            h = h * self.arch.embed_scale
        if self._pos_embed is not None:
            if position_ids is None:
                position_ids = torch.arange(input_ids.shape[-1], device=self.device).expand_as(input_ids)
            h = h + self._pos_embed(position_ids.to(self.device)).to(h.device)
        if self._embed_norm is not None:  # normalised before layer 0 (NanoChat)
            h = self._embed_norm(h)
        return h

    def rotary_embeddings(self, hidden: torch.Tensor, position_ids: torch.Tensor, layer: int | None = None) -> Any:
        """The model's rotary ``(cos, sin)`` at these positions (for ``layer``'s attention type, where the
        family gives local and global layers different bases); ``None`` without rotary embeddings."""
        if self._rotary is None:
            return None
        if self._rotary_by_type:
            return self._rotary(hidden, position_ids, self.arch.layer_type(0 if layer is None else layer))
        return self._rotary(hidden, position_ids)

    def final_norm(self, h: torch.Tensor) -> torch.Tensor:
        """The model's final LayerNorm/RMSNorm, applied to residual vectors (moved to the norm's device)."""
        return self._final_norm(h.to(compat.execution_device(self._final_norm, self.device)))

    def unembed(self, h: torch.Tensor, *, normalize: bool = True, fp32: bool = False) -> torch.Tensor:
        """Logits from residual vectors: ``lm_head(final_norm(h))``, with the family's final-logit soft-capping
        (the logit lens). ``fp32=True`` computes the unembedding in float32, upcasting the vocabulary in chunks
        (no float32 copy of the whole matrix): a bf16/fp16 model's lens needs it, as small logit differences
        over a 100k-token vocabulary drown in bf16 rounding. ``h`` moves to the head's device."""
        x = self.final_norm(h) if normalize else h
        W = self._lm_head.weight
        x = x.to(compat.execution_device(self._lm_head, self.device))
        if fp32 and W.dtype != torch.float32 and W.device.type != "meta":
            bias = getattr(self._lm_head, "bias", None)
            xf = x.float()
            parts = []
            for i in range(0, W.shape[0], 16384):
                c = xf @ W[i:i + 16384].float().T
                parts.append(c if bias is None else c + bias[i:i + 16384].float())
            logits = torch.cat(parts, dim=-1)
        else:
            logits = self._lm_head(x.to(W.dtype))
        if self.arch.logit_scale:
            logits = logits * self.arch.logit_scale
        cap = self.arch.final_logit_softcap
        return torch.tanh(logits / cap) * cap if cap else logits

    def _module_ref(self, path: str) -> torch.nn.Module:  # the old private name, kept for users' code
        return self.module(path)

    # ------------------------------------------------------------------ self-check
    def self_check(self, *, n_tokens: int = 6, rtol: float | None = None) -> dict[str, float]:
        """Check that the three ways this model is run give the same next-token logits.

        On a short fixed token sequence, the logits of one uncached forward are compared with
        (1) KV-cached decoding (prefill, then one token at a time: what :meth:`generate` does) and
        (2) the raw stack runner continuing a cached prefix (what the patching engine and the
        steering fast path do). They agree to float rounding on every supported combination of
        versions; a library change that silently breaks one of them (transformers 5.25 left the
        TransformerLens backend's KV cache empty, and generation turned to garbage with no error)
        raises :class:`ModelSelfCheckError` here instead of producing wrong numbers later.

        Returns the largest difference per path, relative to the logits' scale. ``load`` runs this
        on every model it loads (``load(..., check=False)`` skips it).
        """
        from . import compat
        from .stack import StackRunner

        T = max(3, min(int(n_tokens), self.facts.n_ctx))
        ids = (torch.arange(T, device=self.device) * 7919 + 11) % self.facts.d_vocab
        ids = ids.long().unsqueeze(0)
        am = torch.ones_like(ids)
        pos = torch.arange(T, device=self.device).unsqueeze(0)
        full = self._run(ids, am, pos, planned=[], captures=[])[0][0].float()  # [T, V]
        scale = float(full.abs().max()) + 1.0
        if rtol is None:
            rtol = 1e-3 if self.dtype == torch.float32 else 3e-2
        diffs: dict[str, float] = {}
        cache = compat.new_cache(self._hf_config)
        p = T - 2
        got = [self._run(ids[:, :p], am[:, :p], pos[:, :p], planned=[], captures=[], past=cache, logits_to_keep=1)[0]]
        for t in range(p, T - 1):
            got.append(self._run(ids[:, t:t + 1], am[:, :t + 1], pos[:, t:t + 1], planned=[], captures=[],
                                 past=cache, logits_to_keep=1)[0])
        cached = torch.cat([g[:, -1] for g in got]).float()  # logits at positions p-1 .. T-2
        diffs["cached decoding"] = float((cached - full[p - 1:T - 1]).abs().max()) / scale
        runner = StackRunner(self)
        prefix = runner.prefix_cache(ids, am, pos, upto=p)
        h = runner.run(runner.embed(ids[:, p:], pos[:, p:]), 0, attention_mask=am, position_ids=pos[:, p:], cache=prefix)
        diffs["stack runner"] = float((runner.logits(h[0]).float() - full[p:]).abs().max()) / scale
        bad = {k: v for k, v in diffs.items() if not v <= rtol}
        if bad:
            from importlib.metadata import PackageNotFoundError, version

            vers = []
            for pkg in ("transformers", "transformer-lens", "nnsight", "torch"):
                try:
                    vers.append(f"{pkg} {version(pkg)}")
                except PackageNotFoundError:  # pragma: no cover
                    pass
            worst = ", ".join(f"{k}: {v:.2g}" for k, v in bad.items())
            raise ModelSelfCheckError(
                f"{self.name} on the {self.backend_name} backend fails its self-check: these paths disagree with an "
                f"uncached forward by more than {rtol:g} of the logits' scale ({worst}). Its numbers would be wrong. "
                f"Installed: {', '.join(vers)}. Install the tested versions (`make env`, which uses the lock file), "
                "or report this combination; load(..., check=False) skips the check."
            )
        return diffs

