"""HookedModel: one object for a model, whichever backend (TransformerLens or nnsight) runs it.

Everything that must be identical across backends lives here: tokenisation (BOS, chat
templates, padding, position ids), position resolution, interventions, captures, head
outputs, gradients at sites and the generation loop. A backend only runs one forward pass
and calls a function at each canonical site (:mod:`workbench.models.backends`).

Generation and position policies
--------------------------------
``generate`` runs its own KV-cached decode loop (greedy by default) through the backend, so
interventions apply identically in both backends. An intervention's ``positions`` may be:

- ``"prompt"``: every real prompt token, in the prefill pass only;
- ``"generated"``: every position whose output *produces* a generated token, i.e. the last
  prompt token (its logits give the first generated token) and each generated token as it is
  fed back. So the **first generated token is affected** by a ``"generated"`` intervention,
  as in Chen et al. (2025), who add the persona vector "at every decoding step";
- ``"all"``: both of the above (every prompt token and every generated token);
- an index spec (int, list, slice, ``"last"``...): those prompt tokens, prefill only.

In a plain forward pass (``forward``, ``run_with_cache``, ``gradients``) the policies mean
what they mean in generation's prefill: ``"generated"`` is each row's last real token (whose
logits give the first generated token), ``"prompt"`` and ``"all"`` are every real token.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from workbench.errors import WorkbenchError

from ..interventions import Intervention, InterventionError, as_interventions
from ..results import Provenance, to_jsonable
from ..sites import Site, SiteError, SiteLike, parse_site, parse_sites
from .arch import ArchSpec, text_config
from .cache import ActivationCache
from .tokens import GENERATION_POLICIES, PositionError, PositionSpec, Tokens, resolve_positions

__all__ = ["HookedModel", "ModelFacts", "Generation", "GradientResult", "ContextLengthError", "PaddingError",
           "ModelSelfCheckError", "row_seed"]

Prompt = Any  # str | list[dict] (chat messages)


class ContextLengthError(WorkbenchError, ValueError):
    pass


class PaddingError(WorkbenchError, ValueError):
    pass


class ModelSelfCheckError(WorkbenchError, RuntimeError):
    """Cached decoding or the stack runner disagrees with an uncached forward (see ``HookedModel.self_check``)."""


@dataclass(frozen=True)
class ModelFacts:
    """Static facts of a loaded model."""

    name: str
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    parallel_attn_mlp: bool
    normalization: str
    n_experts: int
    experts_per_token: int
    has_chat_template: bool
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None

    def to_dict(self) -> dict:
        return to_jsonable(self)


@dataclass
class Generation:
    """Outputs of :meth:`HookedModel.generate`, one row per prompt (input order)."""

    prompts: list[Any]
    prompt_texts: list[str]
    completions: list[str]
    completion_ids: list[list[int]]
    finish_reasons: list[str]
    settings: dict
    provenance: Provenance

    def __len__(self) -> int:
        return len(self.completions)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({
            "prompt": [p if isinstance(p, str) else str(p) for p in self.prompts],
            "prompt_text": self.prompt_texts, "completion": self.completions,
            "n_tokens": [len(c) for c in self.completion_ids], "finish_reason": self.finish_reasons,
        })


@dataclass
class GradientResult:
    """A scalar metric, and activations and their gradients ``d metric / d activation`` per site."""

    value: float
    activations: ActivationCache
    grads: ActivationCache
    logits: torch.Tensor


@dataclass
class _Capture:
    site: Site
    select: Callable[[torch.Tensor], torch.Tensor] | None = None
    dtype: torch.dtype | None = None
    device: Any = None
    keep_graph: bool = False


@dataclass
class _Planned:
    """An intervention with its position mask for one forward pass."""

    iv: Intervention
    mask: torch.Tensor


class HookedModel:
    """A language model with canonical sites, interventions, caching and generation.

    Build one with :func:`workbench.models.load`. The important methods:

    - :meth:`tokenize` -> :class:`Tokens` (BOS, chat template, padding: decided once here)
    - :meth:`forward` -> logits, with ``interventions=[...]``
    - :meth:`run_with_cache` -> ``(logits, ActivationCache)`` for chosen sites and positions
    - :meth:`generate` -> :class:`Generation`, interventions active on a position policy
    - :meth:`gradients` -> activations and ``d metric / d activation`` at sites
    - :meth:`hooks` -> context manager keeping interventions active for every call inside it
    - :attr:`facts` -> layers, heads, KV heads, d_model, d_head, vocabulary...
    """

    def __init__(self, hf_model: torch.nn.Module, tokenizer: Any, *, backend: str, arch: ArchSpec,
                 name: str, source: str, prepend_bos: bool | None = None, notes: str = "",
                 tl_model_name: str | None = None, source_hash: str | None = None, attn_implementation: str = "auto"):
        self.arch = arch
        self.name = name
        self.source = source
        self.notes = notes
        self.tokenizer = tokenizer
        self._hf_config = text_config(hf_model.config)
        self._source_hash = source_hash
        self._weights_hash: str | None = None
        self._active: list[list[Intervention]] = []
        # References to the original modules and tensors, taken before a backend wraps the tree
        # (TransformerLens renames state_dict keys; the weights hash must not depend on the backend).
        arch.check_model(hf_model)
        self._raw = hf_model
        from . import compat

        self._state_items = compat.state_tensors(hf_model)
        self._dispatched = compat.is_dispatched(hf_model)
        self._embed = arch.get(hf_model, arch.embed)
        self._final_norm = arch.get(hf_model, arch.final_norm)
        self._lm_head = arch.get(hf_model, arch.lm_head)
        self._layers = list(arch.get(hf_model, arch.layers))
        self._o_modules = [arch.get(hf_model, arch.layer_path(i, arch.o)) for i in range(len(self._layers))]
        self._rotary = arch.get(hf_model, arch.rotary) if arch.rotary else None
        self._rotary_by_type = self._rotary is not None and \
            "layer_type" in inspect.signature(self._rotary.forward).parameters
        self._pos_embed = arch.get(hf_model, arch.pos_embed) if arch.pos_embed else None
        self._refs: dict[str, torch.nn.Module] = {}
        self._roles: list[dict[str, torch.nn.Module]] = []
        for i in range(len(self._layers)):
            self._refs[arch.layer_path(i)] = self._layers[i]
            roles = {}
            for role, rel in arch.layer_rels().items():
                path = arch.layer_path(i, rel)
                roles[role] = self._refs[path] = arch.get(hf_model, path)
            self._roles.append(roles)
        f = arch.facts(hf_model.config)
        self._tokenizer_adds_bos = self._detect_tokenizer_bos()
        self.prepend_bos = self._tokenizer_adds_bos if prepend_bos is None else bool(prepend_bos)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.facts = ModelFacts(
            name=name, has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad, **f,
        )
        self.backend_name = backend
        if backend == "tl":
            from transformer_lens.model_bridge import TransformerBridge

            from .backends import TLBackend

            self.bridge = TransformerBridge.boot_transformers(
                tl_model_name or source, hf_model=hf_model, tokenizer=tokenizer,
                device=str(self.device), dtype=self.dtype,
            )
            self._backend = TLBackend(self.bridge)
        elif backend == "nnsight":
            import nnsight

            from .backends import NNsightBackend

            # device= pins the model where load() put it: transformers' pipeline (which nnsight wraps
            # the model in) otherwise moves it to the first GPU, also when load(device="cpu") was asked
            # (a model dispatched over devices by accelerate must not be given one: the pipeline refuses)
            dev = self._embed.weight.device
            place = {} if getattr(hf_model, "hf_device_map", None) else {"device": dev}
            self.nnsight = nnsight.TransformersModel(hf_model, tokenizer=tokenizer, task="text-generation", **place)
            if self._embed.weight.device != dev:  # pragma: no cover - a pipeline that ignored device=
                hf_model.to(dev)
            self._backend = NNsightBackend(self.nnsight, hf_model, arch, self.facts)
        else:
            raise ValueError(f"backend must be 'tl' or 'nnsight', got {backend!r}")
        self.attn_implementation = self._choose_attention(attn_implementation)

    # ------------------------------------------------------------------ facts
    @property
    def device(self) -> torch.device:
        """Where inputs go: the embedding's (execution) device. A model split over devices by ``device_map``
        returns activations, caches and results on this device."""
        from . import compat

        return compat.execution_device(self._embed)

    @property
    def dtype(self) -> torch.dtype:
        return self._embed.weight.dtype

    @property
    def n_layers(self) -> int:
        return self.facts.n_layers

    @property
    def hf_model(self) -> torch.nn.Module:
        """The underlying HF module tree (wrapped in place by TransformerLens for backend='tl')."""
        return self._raw

    @property
    def weights_hash(self) -> str:
        """sha256 (16 hex) over the parameters as loaded (names, dtypes, shapes, bytes)."""
        if self._weights_hash is None:
            h = hashlib.sha256()
            for k, get in self._state_items:
                t = get().detach().cpu().contiguous()
                h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            self._weights_hash = h.hexdigest()[:16]
        return self._weights_hash

    @property
    def source_hash(self) -> str | None:
        """sha256 of the artefact the weights came from (the GGUF of the default model, an organism's
        adapter), where the registry knows it; None for other models."""
        return self._source_hash

    def provenance(self, **kw: Any) -> Provenance:
        """A :class:`Provenance` naming this model, its weights hash and its source's hash (a GGUF's or an
        adapter's) (plus ``kw``); ``extra`` also records the backend, dtype and attention implementation."""
        kw.setdefault("source_hash", self._source_hash)
        extra = {"backend": self.backend_name, "dtype": str(self.dtype).replace("torch.", ""),
                 "attn_implementation": self.attn_implementation}
        extra.update(kw.pop("extra", None) or {})
        return Provenance(model=self.name, model_hash=self.weights_hash, extra=extra, **kw)

    # ------------------------------------------------------------------ attention implementation
    def _choose_attention(self, requested: str) -> str:
        """Pick the attention kernel runs use when nothing reads or writes attention weights.

        TransformerLens's bridge computes attention itself, step by step (its hooks need the pattern), so the
        ``tl`` backend always runs that ("transformer_lens"). On ``nnsight`` the HF modules run: ``"auto"`` takes
        SDPA where the family supports it (flash attention 2 when asked for and installed), and a run that reads
        or writes ``pattern`` switches to eager for its duration (:meth:`_attention_for`)."""
        if requested not in ("auto", "eager", "sdpa", "flash_attention_2"):
            raise ValueError(f"attn_implementation must be 'auto', 'eager', 'sdpa' or 'flash_attention_2', got {requested!r}")
        if self.backend_name == "tl":
            return "transformer_lens"
        want = "sdpa" if requested == "auto" else requested
        if want != "eager":
            try:
                self._raw.set_attn_implementation(want)
            except (ValueError, ImportError) as e:
                if requested != "auto":
                    raise ValueError(f"{self.name} cannot use {requested} attention: {e}") from e
        return str(getattr(self._raw.config, "_attn_implementation", "eager") or "eager")

    @contextlib.contextmanager
    def _attention_for(self, sites: Iterable[Site]) -> Iterator[None]:
        """Eager attention for the duration of a run that reads or writes attention patterns (the fused
        kernels never materialise them); the model's default otherwise."""
        need = self.attn_implementation not in ("eager", "transformer_lens") and any(s.kind == "pattern" for s in sites)
        if not need:
            yield
            return
        self._raw.set_attn_implementation("eager")
        try:
            yield
        finally:
            self._raw.set_attn_implementation(self.attn_implementation)

    def __repr__(self) -> str:
        f = self.facts
        return (f"HookedModel({self.name!r}, backend={self.backend_name!r}, {f.architecture}, "
                f"{f.n_layers} layers, {f.n_heads} heads ({f.n_kv_heads} KV), d_model={f.d_model}, "
                f"vocab={f.d_vocab}, {self.dtype}, {self.device})")

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

    # ------------------------------------------------------------------ sites
    def check_site(self, s: SiteLike) -> Site:
        """Parse and validate a site against this model (layer/head range, architecture)."""
        s = parse_site(s)
        f = self.facts
        layer = s.layer + f.n_layers if s.layer < 0 else s.layer
        if not 0 <= layer < f.n_layers:
            raise SiteError(f"layer {s.layer} is out of range for {self.name} ({f.n_layers} layers: 0..{f.n_layers - 1})")
        if layer != s.layer:
            s = Site(s.kind, layer, s.head)
        if s.head is not None:
            n = f.n_kv_heads if s.kind in ("k", "v") else f.n_heads
            if not 0 <= s.head < n:
                raise SiteError(f"head {s.head} is out of range for {s.kind} in {self.name} ({n} heads: 0..{n - 1})")
        if s.kind == "resid_mid" and f.parallel_attn_mlp:
            raise SiteError(
                f"{self.name} uses a parallel residual (attention and MLP read the same input), so it "
                "has no resid_mid; use resid_pre, attn_out, mlp_out or resid_post"
            )
        if s.kind == "router" and not self.arch.is_moe:
            raise SiteError(f"{self.name} has no mixture-of-experts router (router sites exist on MoE models only)")
        if s.kind in ("q", "k", "v") and self.arch.qkv == "fused":
            raise SiteError(f"{self.name} computes q, k and v in one fused projection of a layout the workbench does "
                            "not know, so it has no q/k/v sites; z, pattern, head_out and the residual sites work")
        return s

    def all_sites(self, kinds: Iterable[str] | None = None) -> list[Site]:
        """Every valid site of this model (optionally of some kinds)."""
        from ..sites import SITE_KINDS

        kinds = list(kinds) if kinds is not None else list(SITE_KINDS)
        out = []
        for L in range(self.n_layers):
            for k in kinds:
                if k == "resid_mid" and self.facts.parallel_attn_mlp or k == "router" and not self.arch.is_moe \
                        or k in ("q", "k", "v") and self.arch.qkv == "fused":
                    continue
                out.append(Site(k, L))
        return out

    # ------------------------------------------------------------------ the public model contract
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
        """``[n_heads, d_head, d_model]`` output weights of layer ``layer`` (``head_out = z[h] @ W_O[h]``)."""
        return self.arch.W_O(self._o_modules[layer], self.facts.n_heads, self.facts.d_head)

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
        """The residual stream entering layer 0: token embeddings (scaled where the family scales them),
        plus learned position embeddings where the family has them."""
        h = self._embed(input_ids.to(self.device))
        if self._pos_embed is not None:
            if position_ids is None:
                position_ids = torch.arange(input_ids.shape[-1], device=self.device).expand_as(input_ids)
            h = h + self._pos_embed(position_ids.to(self.device)).to(h.device)
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
        return self._final_norm(h.to(_module_device(self._final_norm, self.device)))

    def unembed(self, h: torch.Tensor, *, normalize: bool = True, fp32: bool = False) -> torch.Tensor:
        """Logits from residual vectors: ``lm_head(final_norm(h))``, with the family's final-logit soft-capping
        (the logit lens). ``fp32=True`` computes the unembedding in float32, upcasting the vocabulary in chunks
        (no float32 copy of the whole matrix): a bf16/fp16 model's lens needs it, as small logit differences
        over a 100k-token vocabulary drown in bf16 rounding. ``h`` moves to the head's device."""
        x = self.final_norm(h) if normalize else h
        W = self._lm_head.weight
        x = x.to(_module_device(self._lm_head, self.device))
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

    # ------------------------------------------------------------------ tokenisation
    def _detect_tokenizer_bos(self) -> bool:
        tok = self.tokenizer
        if tok.bos_token_id is None:
            return False
        with_sp = tok("a b", add_special_tokens=True)["input_ids"]
        return len(with_sp) > 0 and with_sp[0] == tok.bos_token_id and \
            tok("a b", add_special_tokens=False)["input_ids"][:1] != [tok.bos_token_id]

    def format_chat(self, prompt: Prompt, *, system: str | None = None, assistant_prefix: str | None = None,
                    add_generation_prompt: bool = True) -> str:
        """The exact text of a chat-formatted prompt (the model's own chat template)."""
        if not self.facts.has_chat_template:
            raise ValueError(f"{self.name} has no chat template; call with chat=False")
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = [dict(m) for m in prompt]
        if system is not None:
            if messages and messages[0].get("role") == "system":
                raise ValueError("system= given, but the messages already start with a system message")
            messages = [{"role": "system", "content": system}] + messages
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return text + (assistant_prefix or "")

    def tokenize(self, prompts: Prompt | Sequence[Prompt] | Tokens, *, chat: bool = False,
                 system: str | None = None, assistant_prefix: str | None = None,
                 prepend_bos: bool | None = None, padding_side: str = "left") -> Tokens:
        """Tokenise prompts the one way both backends will see them.

        Args:
            prompts: a string, a list of strings, chat messages (list of dicts) or a list of them.
            chat: apply the model's chat template (with the generation prompt).
            system: a system message (chat only).
            assistant_prefix: text appended after the generation prompt (e.g. ``"("`` before an
                A/B answer letter).
            prepend_bos: add the BOS token to raw text. Default: the model's policy, which is the
                tokenizer's own behaviour unless the registry says otherwise. Chat-formatted text
                never gets an extra BOS (the template writes its own special tokens).
            padding_side: ``"left"`` (default; needed for generation) or ``"right"``.
        """
        # token ids given as tensors (or Tokens made elsewhere) go to the model's device: a CPU
        # ``torch.tensor(ids)`` passed to a CUDA model is the common case
        if isinstance(prompts, Tokens):
            self._check_ids(prompts.input_ids[prompts.attention_mask.bool()])
            return prompts if prompts.input_ids.device == self.device else prompts.to(self.device)
        if isinstance(prompts, (list, tuple)) and prompts and isinstance(prompts[0], Tokens):
            rows = [t.real_tokens(0) for t in prompts]
            self._check_ids(torch.tensor([i for r in rows for i in r], dtype=torch.long))
            return self._pad(rows, padding_side, [t.texts[0] if t.texts else None for t in prompts], {})
        if isinstance(prompts, torch.Tensor):
            if prompts.is_floating_point() or prompts.is_complex() or prompts.ndim not in (1, 2):
                raise ValueError(f"token ids must be an integer tensor [seq] or [batch, seq], got {prompts.dtype} "
                                 f"of shape {tuple(prompts.shape)}")
            ids = (prompts if prompts.ndim == 2 else prompts.unsqueeze(0)).long().to(self.device)
            if ids.shape[-1] == 0:
                raise ValueError("token ids are empty: give at least one token per row")
            self._check_ids(ids)
            if ids.shape[-1] > self.facts.n_ctx:
                raise ContextLengthError(f"{ids.shape[-1]} tokens are more than {self.name}'s context of "
                                         f"{self.facts.n_ctx}; truncate or split the input")
            return Tokens(ids, torch.ones_like(ids), padding_side)
        single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
        items = [prompts] if single else list(prompts)
        if not items:
            raise ValueError("no prompts given")
        if not chat and (system is not None or assistant_prefix is not None):
            raise ValueError("system= and assistant_prefix= only apply with chat=True")
        texts: list[str] = []
        for p in items:
            if chat:
                texts.append(self.format_chat(p, system=system, assistant_prefix=assistant_prefix))
            elif isinstance(p, str):
                texts.append(p)
            else:
                raise ValueError("chat messages (lists of dicts) need chat=True")
        bos = self.prepend_bos if prepend_bos is None else prepend_bos
        ids_list = []
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"]
            if bos and not chat:
                if self.facts.bos_token_id is None:
                    raise ValueError(f"prepend_bos=True but {self.name}'s tokenizer has no BOS token")
                ids = [self.facts.bos_token_id] + ids
            if not ids:
                raise ValueError(f"prompt {len(ids_list)} tokenises to no tokens: {t!r}")
            ids_list.append(ids)
        too_long = [(i, len(x)) for i, x in enumerate(ids_list) if len(x) > self.facts.n_ctx]
        if too_long:
            i, n = too_long[0]
            raise ContextLengthError(
                f"prompt {i} has {n} tokens, more than {self.name}'s context of {self.facts.n_ctx}; "
                f"truncate or split it ({len(too_long)} prompt(s) too long)"
            )
        return self._pad(ids_list, padding_side, texts,
                         {"chat": chat, "system": system, "assistant_prefix": assistant_prefix})

    def _check_ids(self, ids: torch.Tensor) -> None:
        """Refuse token ids outside the vocabulary (on a GPU they would end in a device-side assert)."""
        if ids.numel() == 0:
            return
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.facts.d_vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is outside {self.name}'s vocabulary (0..{self.facts.d_vocab - 1}); "
                             "were these ids made by another model's tokenizer?")

    def _pad(self, ids_list: list[list[int]], padding_side: str, texts: list, meta: dict) -> Tokens:
        T = max(len(x) for x in ids_list)
        pad = self.facts.pad_token_id if self.facts.pad_token_id is not None else 0
        input_ids = torch.full((len(ids_list), T), pad, dtype=torch.long)
        mask = torch.zeros((len(ids_list), T), dtype=torch.long)
        for i, x in enumerate(ids_list):
            if padding_side == "left":
                input_ids[i, T - len(x):] = torch.tensor(x)
                mask[i, T - len(x):] = 1
            else:
                input_ids[i, :len(x)] = torch.tensor(x)
                mask[i, :len(x)] = 1
        return Tokens(input_ids.to(self.device), mask.to(self.device), padding_side, texts, meta)

    def to_str_tokens(self, prompt: str | Tokens, row: int = 0, **kw: Any) -> list[str]:
        """The tokens of a prompt as strings (real tokens only)."""
        toks = self.tokenize(prompt, **kw) if not isinstance(prompt, Tokens) else prompt
        return [self.tokenizer.decode([i]) for i in toks.real_tokens(row)]

    # ------------------------------------------------------------------ core run
    def _plan(self, ivs: list[Intervention], tokens: Tokens) -> list[_Planned]:
        out = []
        for iv in ivs:
            site = self.check_site(iv.site)
            if site != iv.site:
                iv = Intervention(site, iv.op, iv.value, iv.alpha, iv.positions, iv.heads, iv.fn, iv.label, iv.meta)
            if site.kind == "pattern" and self.backend_name == "nnsight":
                raise InterventionError(
                    "interventions on attention patterns need backend='tl': in HF modules the pattern "
                    "is computed inside the attention function, where nnsight can read but not replace it"
                )
            iv.validate(self.facts)
            pos = iv.positions
            if isinstance(pos, str) and pos in GENERATION_POLICIES:
                # Outside generate(), a forward pass over a prompt is generation's prefill:
                # "generated" is the position whose logits produce the next token (the last
                # real token, as in generate's prefill); "prompt" and "all" are every real token.
                pos = "last" if pos == "generated" else "all"
            mask = resolve_positions(pos, tokens)
            out.append(_Planned(iv, mask))
        return out

    def _run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, *,
             planned: list[_Planned], captures: list[_Capture], past: Any = None,
             logits_to_keep: int | None = None, grad: bool = False
             ) -> tuple[torch.Tensor, dict[Site, torch.Tensor], dict[Site, torch.Tensor]]:
        """One forward pass. Returns logits, the captured activations, and (for captures that keep
        the graph) the tensors to differentiate with respect to."""
        hooks: dict[Site, list[Callable]] = defaultdict(list)
        captured: dict[Site, torch.Tensor] = {}
        out_device = self.device
        grad_targets: dict[Site, torch.Tensor] = {}
        head_out: dict[int, dict] = defaultdict(lambda: {"ivs": [], "caps": []})

        def capture_fn(c: _Capture):
            def fn(x):
                y = x if c.keep_graph else x.detach()
                if c.keep_graph:
                    grad_targets[c.site] = x
                if c.select is not None:
                    y = c.select(y)
                dev = c.device or (out_device if self._dispatched else None)  # a split model's caches on one device
                if c.dtype is not None or dev is not None:
                    y = y.to(device=dev or y.device, dtype=c.dtype or y.dtype)
                captured[c.site] = y
                return x
            return fn

        for p in planned:
            if p.iv.site.kind == "head_out":
                head_out[p.iv.site.layer]["ivs"].append(p)
            else:
                hooks[p.iv.site].append(lambda x, p=p: p.iv.apply(x, p.mask))
        for c in captures:
            if c.site.kind == "head_out":
                head_out[c.site.layer]["caps"].append(c)
            else:
                hooks[c.site].append(capture_fn(c))
        for L, spec in head_out.items():
            scratch: dict[str, torch.Tensor] = {}
            hooks[Site("z", L)].append(lambda x, scratch=scratch: scratch.__setitem__("z", x) or x)
            W_O = self.W_O(L)

            def attn_fn(x, scratch=scratch, spec=spec, W_O=W_O):
                ho = torch.einsum("bthd,hdm->bthm", scratch["z"], W_O.to(x.dtype))
                new = ho
                for p in spec["ivs"]:
                    new = p.iv.apply(new, p.mask)
                for c in spec["caps"]:
                    capture_fn(c)(new)
                    if c.keep_graph:  # d metric / d head_out[h] = d metric / d attn_out, for every h
                        grad_targets[c.site] = x
                return x + (new - ho).sum(2) if spec["ivs"] else x
            hooks[Site("attn_out", L)].insert(0, attn_fn)
        if grad:
            first = Site("resid_pre", 0)
            hooks[first].insert(0, lambda x: x.detach().requires_grad_(True))

        def compose(fns):
            def fn(x):
                for f in fns:
                    x = f(x)
                return x
            return fn

        composed = {s: compose(fns) for s, fns in hooks.items()}
        for s in composed:  # router logits come flattened over [batch * pos]
            if s.kind == "router":
                B, T = input_ids.shape[:2]
                composed[s] = (lambda fn: lambda x: fn(x.reshape(B, T, -1)).reshape(x.shape))(composed[s])
        ctx = torch.enable_grad() if grad else torch.inference_mode()
        with ctx, self._attention_for(composed):
            logits = self._backend.run(input_ids, attention_mask, position_ids, composed,
                                       past_key_values=past, logits_to_keep=logits_to_keep)
        return logits, captured, grad_targets

    def _active_ivs(self, interventions: Any) -> list[Intervention]:
        return [iv for group in self._active for iv in group] + as_interventions(interventions)

    # ------------------------------------------------------------------ public runs
    def forward(self, inputs: Any, *, interventions: Any = None, logits: str | None = "all",
                **tokenize_kw: Any) -> torch.Tensor | None:
        """Run the model; return logits (``"all"``: ``[batch, seq, vocab]``; ``"last"``: ``[batch, vocab]``
        at each row's last real token; ``None``: skip the unembedding where the backend allows)."""
        return self._forward_capture(inputs, [], interventions=interventions, logits=logits, **tokenize_kw)[0]

    __call__ = forward

    def _forward_capture(self, inputs: Any, captures: list[_Capture], *, interventions: Any, logits: str | None,
                         grad: bool = False, **tokenize_kw: Any):
        tokens = self.tokenize(inputs, **tokenize_kw)
        planned = self._plan(self._active_ivs(interventions), tokens)
        if logits not in ("all", "last", None):
            raise ValueError(f"logits must be 'all', 'last' or None, got {logits!r}")
        keep = 1 if (logits is None or (logits == "last" and tokens.is_uniform_last)) else None
        out, captured, targets = self._run(tokens.input_ids, tokens.attention_mask, tokens.position_ids,
                                           planned=planned, captures=captures, logits_to_keep=keep, grad=grad)
        if logits == "last":
            out = out[:, -1] if keep else out[torch.arange(len(tokens)), tokens.last_index]
        elif logits is None:
            out = None
        return out, captured, targets, tokens

    def run_with_cache(self, inputs: Any, sites: Iterable[SiteLike], *, positions: PositionSpec = "all",
                       dtype: torch.dtype | None = None, device: Any = None, interventions: Any = None,
                       logits: str | None = "all", **tokenize_kw: Any) -> tuple[torch.Tensor | None, ActivationCache]:
        """Forward pass that records ``sites``.

        ``positions="all"`` keeps the padded ``[batch, seq, ...]`` tensors; ``"last"`` keeps
        ``[batch, ...]`` at each row's last real token. Activations are recorded after any
        intervention at the same site. ``dtype``/``device`` convert what is stored (default: as
        computed, on the model's device).

        Collecting residual-stream activations (only ``resid_pre``/``resid_post`` sites, no interventions,
        ``logits=None``: what probes and activation stores do) takes a fast path: the model's own decoder
        layers run directly, up to the last layer asked for, with no backend tracing, no final norm and no
        unembedding (the same numbers: tested against both backends).
        """
        tokens = self.tokenize(inputs, **tokenize_kw)
        caps = [self._capture_spec(s, positions, tokens, dtype, device) for s in parse_sites(sites)]
        if logits is None and not self._active_ivs(interventions) and caps \
                and all(c.site.kind in ("resid_pre", "resid_post") for c in caps):
            out, captured = None, self._collect_residuals(tokens, caps)
        else:
            out, captured, _, tokens = self._forward_capture(tokens, caps, interventions=interventions, logits=logits)
        return out, ActivationCache(self._order_captured(captured, caps), tokens, "all" if positions == "all" else positions)

    @torch.inference_mode()
    def _collect_residuals(self, tokens: Tokens, caps: list[_Capture]) -> dict[Site, torch.Tensor]:
        """Residual-stream captures through the raw stack, stopping after the last layer needed."""
        from .stack import StackRunner, raw_site_hooks

        captured: dict[Site, torch.Tensor] = {}
        out_device = self.device

        def grab(c: _Capture):
            def fn(x):
                y = x if c.select is None else c.select(x)
                dev = c.device or (out_device if self._dispatched else None)
                if c.dtype is not None or dev is not None:
                    y = y.to(device=dev or y.device, dtype=c.dtype or y.dtype)
                captured[c.site] = y
                return x
            return fn
        last = max(c.site.layer for c in caps)
        runner = StackRunner(self)
        h = runner.embed(tokens.input_ids, tokens.position_ids)
        with raw_site_hooks(self, {c.site: grab(c) for c in caps}):
            runner.run(h, 0, last + 1, attention_mask=tokens.attention_mask, position_ids=tokens.position_ids)
        return captured

    def _capture_spec(self, s: SiteLike, positions: PositionSpec, tokens: Tokens, dtype, device,
                      keep_graph: bool = False) -> _Capture:
        site = self.check_site(s).whole
        select = None
        if positions != "all":
            if positions != "last":
                raise PositionError("run_with_cache stores positions='all' (padded) or 'last'; index the cache for others")
            idx = tokens.last_index
            rows = torch.arange(len(tokens), device=idx.device)
            if site.kind == "pattern":
                select = lambda x, idx=idx, rows=rows: x[rows, :, idx.to(x.device)]  # noqa: E731
            else:
                select = lambda x, idx=idx, rows=rows: x[rows, idx.to(x.device)]  # noqa: E731
        return _Capture(site, select, dtype, device, keep_graph)

    @staticmethod
    def _order_captured(captured: dict, caps: list[_Capture]) -> dict[Site, torch.Tensor]:
        out = {}
        for c in caps:
            if c.site not in captured:
                raise RuntimeError(f"site {c.site.name} was requested but never captured")
            out[c.site] = captured[c.site]
        return out

    def gradients(self, inputs: Any, sites: Iterable[SiteLike], metric: Callable[[torch.Tensor, Tokens], torch.Tensor],
                  *, interventions: Any = None, **tokenize_kw: Any) -> GradientResult:
        """Activations at ``sites`` and the gradient of a scalar ``metric(logits, tokens)`` with respect to
        them (one forward and one backward; attribution patching builds on this).

        For ``head_out`` the gradient is ``d metric / d attn_out`` for every head (each head's output is
        added to the residual unchanged)."""
        tokens = self.tokenize(inputs, **tokenize_kw)
        site_list = [self.check_site(s).whole for s in parse_sites(sites)]
        caps = [_Capture(s, keep_graph=True) for s in site_list]
        logits, captured, targets, tokens = self._forward_capture(tokens, caps, interventions=interventions,
                                                                  logits="all", grad=True)
        with torch.enable_grad():
            value = metric(logits, tokens)
            if value.ndim != 0:
                raise ValueError(f"metric must return a scalar tensor, got shape {tuple(value.shape)}")
            wrt = [targets[s] for s in site_list]
            grads = torch.autograd.grad(value, wrt, allow_unused=True)
        acts, gr = {}, {}
        for s, g, a in zip(site_list, grads, wrt):
            act = captured[s]
            if g is None:
                g = torch.zeros_like(a)
            if s.kind == "head_out":
                g = g.unsqueeze(2).expand_as(act)
            acts[s] = act.detach()
            gr[s] = g.detach()
        return GradientResult(float(value.detach()), ActivationCache(acts, tokens), ActivationCache(gr, tokens),
                              logits.detach())

    @contextlib.contextmanager
    def hooks(self, interventions: Any) -> Iterator["HookedModel"]:
        """Keep ``interventions`` active for every forward / cache / generate call inside the block."""
        group = as_interventions(interventions)
        for iv in group:
            self.check_site(iv.site)
            iv.validate(self.facts)
        self._active.append(group)
        try:
            yield self
        finally:
            self._active.remove(group)

    # ------------------------------------------------------------------ generation
    def generate(self, prompts: Prompt | Sequence[Prompt], *, max_new_tokens: int = 32, interventions: Any = None,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, stop_at_eos: bool = True,
                 batch_size: int = 16, progress: bool = False, chat: bool = False, system: str | None = None,
                 assistant_prefix: str | None = None, prepend_bos: bool | None = None,
                 sample_ids: Sequence[int] | None = None) -> Generation:
        """Generate continuations with a KV cache, interventions active on their position policy.

        Greedy by default; ``do_sample=True`` samples with ``temperature``/``top_k``/``top_p``. Prompts
        run in batches of ``batch_size``, sorted by length to limit padding; outputs keep the input order.

        Sampling is per row, so a sample does not depend on the batch it ran in: each row draws from
        its own ``torch.Generator`` seeded with the first 8 bytes of
        ``sha256("{seed}|{prompt token ids}|{sample id}")`` (see :func:`row_seed`), where the token ids are
        the row's real prompt tokens (after chat template and BOS) and the sample id is ``sample_ids[i]``
        or, by default, how many identical prompts came before it in this call (0, 1, 2...). So the same
        prompt and seed give the same tokens alone, in any batch and at any ``batch_size``, and ``n``
        copies of a prompt in one call are ``n`` different samples (sample ids 0..n-1), the same as
        ``n`` calls with ``sample_ids=[j]``. Tokens can differ only where batching changes the logits
        themselves (padding changes float rounding) enough to move a draw across a boundary.
        """
        for what, val in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{what} must be a positive integer, got {val!r}")
        if not math.isfinite(float(temperature)):
            raise ValueError(f"temperature must be a finite number, got {temperature!r}")
        if isinstance(prompts, torch.Tensor):  # token ids: [seq] or [batch, seq], no padding
            prompts = self.tokenize(prompts)
        if isinstance(prompts, Tokens):
            if prompts.padding_side != "left" and not bool((prompts.attention_mask == 1).all()):
                raise PaddingError(
                    "generate() needs left-padded tokens: with right padding the shorter rows would continue "
                    "from their padding. Tokenize with padding_side='left' (the default) or pass the prompts."
                )
            items = [prompts.select([i]) for i in range(len(prompts))]
        else:
            single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
            items = [prompts] if single else list(prompts)
        ivs = self._active_ivs(interventions)
        for iv in ivs:
            pos = iv.positions
            if isinstance(pos, str) and pos in ("generated", "all") and isinstance(iv.value, torch.Tensor) \
                    and iv.value.ndim >= 3:
                raise InterventionError(
                    f"{iv.site.name}: a full-activation value covers prompt positions only; use "
                    "positions='prompt' or an index spec in generate()"
                )
        kw = dict(chat=chat, system=system, assistant_prefix=assistant_prefix, prepend_bos=prepend_bos)
        real = [self.tokenize(p, **kw).real_tokens(0) for p in items]
        lengths = [len(r) for r in real]
        longest = max(lengths, default=0)
        if longest + max_new_tokens > self.facts.n_ctx:
            raise ContextLengthError(
                f"generating {max_new_tokens} tokens after a prompt of {longest} tokens would run past {self.name}'s "
                f"context of {self.facts.n_ctx} tokens; use max_new_tokens <= {max(self.facts.n_ctx - longest, 0)} "
                "or a shorter prompt"
            )
        if sample_ids is None:
            seen: dict[tuple, int] = defaultdict(int)
            sample_ids = []
            for r in real:
                sample_ids.append(seen[tuple(r)])
                seen[tuple(r)] += 1
        elif len(sample_ids) != len(items):
            raise ValueError(f"sample_ids gives {len(sample_ids)} ids for {len(items)} prompts; give one per prompt")
        gens = [torch.Generator(device="cpu").manual_seed(row_seed(seed, r, j)) for r, j in zip(real, sample_ids)]
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        texts: list[str] = [""] * len(items)
        comps: list[str] = [""] * len(items)
        comp_ids: list[list[int]] = [[] for _ in items]
        reasons: list[str] = [""] * len(items)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        it = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc=f"generate ({self.name})", unit="batch")
        for idx in it:
            tokens = self.tokenize([items[i] for i in idx], padding_side="left", **kw)
            ids, reason = self._generate_batch(tokens, ivs, max_new_tokens, do_sample, temperature, top_k, top_p,
                                               [gens[i] for i in idx], stop_at_eos)
            for j, i in enumerate(idx):
                texts[i] = (tokens.texts[j] if tokens.texts and tokens.texts[j] is not None
                            else self.tokenizer.decode(tokens.real_tokens(j)))
                comp_ids[i] = ids[j]
                comps[i] = self.tokenizer.decode(ids[j], skip_special_tokens=True)
                reasons[i] = reason[j]
        settings = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=seed, stop_at_eos=stop_at_eos, chat=chat, system=system,
                        assistant_prefix=assistant_prefix, backend=self.backend_name,
                        interventions=[_describe_iv(iv) for iv in ivs],
                        sample_ids=[int(j) for j in sample_ids] if do_sample else None)
        return Generation(items, texts, comps, comp_ids, reasons, settings,
                          self.provenance(seed=seed, extra={"generation": settings}))

    def _generate_batch(self, tokens: Tokens, ivs: list[Intervention], max_new_tokens: int, do_sample: bool,
                        temperature: float, top_k: int | None, top_p: float | None, gen: list[torch.Generator],
                        stop_at_eos: bool) -> tuple[list[list[int]], list[str]]:
        if tokens.padding_side != "left" and not bool((tokens.attention_mask == 1).all()):
            raise PaddingError("generation needs left padding (right-padded rows would continue from padding)")
        from . import compat

        B, T0 = tokens.shape
        cache = compat.new_cache(self._hf_config)
        prefill = []
        for iv in ivs:
            site = self.check_site(iv.site)
            if site != iv.site:
                iv = Intervention(site, iv.op, iv.value, iv.alpha, iv.positions, iv.heads, iv.fn, iv.label, iv.meta)
            iv.validate(self.facts)
            pos = iv.positions
            if pos == "generated":
                mask = torch.zeros(B, T0, dtype=torch.bool, device=tokens.input_ids.device)
                mask[:, -1] = True
            elif pos in ("all", "prompt"):
                mask = tokens.attention_mask.bool()
            else:
                mask = resolve_positions(pos, tokens)
            if mask.any():
                prefill.append(_Planned(iv, mask))
        decode_ivs = [iv for iv in ivs if iv.positions in ("generated", "all")]
        logits = self._run(tokens.input_ids, tokens.attention_mask, tokens.position_ids, planned=prefill,
                           captures=[], past=cache, logits_to_keep=1)[0]
        am = tokens.attention_mask
        pos_ids = tokens.position_ids[:, -1:]
        eos = self.facts.eos_token_id
        out = torch.zeros(B, 0, dtype=torch.long, device=am.device)
        finished = torch.zeros(B, dtype=torch.bool, device=am.device)
        reasons = ["length"] * B
        for step in range(max_new_tokens):
            nxt = self._choose(logits[:, -1], do_sample, temperature, top_k, top_p, gen)
            if stop_at_eos and eos is not None:
                nxt = torch.where(finished, torch.full_like(nxt, eos), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            if stop_at_eos and eos is not None:
                newly = (nxt == eos) & ~finished
                for b in torch.nonzero(newly).flatten().tolist():
                    reasons[b] = "eos"
                finished |= nxt == eos
                if bool(finished.all()):
                    break
            if step == max_new_tokens - 1:
                break
            am = torch.cat([am, torch.ones(B, 1, dtype=am.dtype, device=am.device)], dim=1)
            pos_ids = pos_ids + 1
            step_mask = torch.ones(B, 1, dtype=torch.bool, device=am.device)
            planned = []
            for iv in decode_ivs:
                site = self.check_site(iv.site)
                if site != iv.site:
                    iv = Intervention(site, iv.op, iv.value, iv.alpha, iv.positions, iv.heads, iv.fn, iv.label, iv.meta)
                planned.append(_Planned(iv, step_mask))
            logits = self._run(nxt[:, None], am, pos_ids, planned=planned, captures=[], past=cache,
                               logits_to_keep=1)[0]
        ids = []
        for b in range(B):
            row = out[b].tolist()
            if stop_at_eos and eos is not None and eos in row:
                row = row[:row.index(eos)]
            ids.append(row)
        return ids, reasons

    @staticmethod
    def _choose(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None,
                top_p: float | None, gen: list[torch.Generator]) -> torch.Tensor:
        """Next tokens ``[B]``: argmax, or one draw per row from that row's generator ``gen[b]``."""
        if not do_sample:
            return logits.argmax(-1)
        if temperature <= 0:
            raise ValueError("temperature must be > 0 when sampling (use do_sample=False for greedy)")
        x = logits.float() / temperature
        if top_k is not None:
            kth = x.topk(min(int(top_k), x.shape[-1]), dim=-1).values[:, -1:]
            x = x.masked_fill(x < kth, -math.inf)
        if top_p is not None:
            sx, si = x.sort(dim=-1, descending=True)
            cp = sx.softmax(-1).cumsum(-1)
            drop = cp - sx.softmax(-1) > top_p
            sx = sx.masked_fill(drop, -math.inf)
            x = torch.full_like(x, -math.inf).scatter(-1, si, sx)
        probs = x.softmax(-1).cpu()
        rows = [torch.multinomial(probs[b], 1, generator=gen[b]) for b in range(probs.shape[0])]
        return torch.cat(rows).to(logits.device)


def row_seed(seed: int, prompt_ids: Sequence[int], sample_id: int) -> int:
    """The seed of one sampled row: first 8 bytes (63 bits) of ``sha256("{seed}|{ids}|{sample_id}")``."""
    key = f"{int(seed)}|{','.join(str(int(t)) for t in prompt_ids)}|{int(sample_id)}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


def _module_device(module: torch.nn.Module, default: torch.device) -> torch.device:
    from . import compat

    return compat.execution_device(module, default)


def _describe_iv(iv: Intervention) -> dict:
    d = {"site": iv.site.name, "op": iv.op, "alpha": iv.alpha, "positions": str(iv.positions),
         "heads": list(iv.heads) if iv.heads else None, "label": iv.label}
    if isinstance(iv.value, torch.Tensor):
        d["value_shape"] = list(iv.value.shape)
        d["value_norm"] = float(iv.value.float().norm())
    return d
