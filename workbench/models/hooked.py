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
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

from ..interventions import Intervention, InterventionError, as_interventions
from ..results import Provenance, to_jsonable
from ..sites import Site, SiteError, SiteLike, parse_site, parse_sites
from .arch import ArchSpec, text_config
from .cache import ActivationCache
from .contract import ModelContractMixin, ModelSelfCheckError
from .generation import Generation, GenerationMixin, _Planned, row_seed
from .tokenization import TokenizationMixin
from .tokens import (
    GENERATION_POLICIES,
    ContextLengthError,
    PaddingError,
    PositionError,
    PositionSpec,
    Tokens,
    resolve_positions,
)

__all__ = ["HookedModel", "ModelFacts", "Generation", "GradientResult", "ContextLengthError", "PaddingError",
           "ModelSelfCheckError", "row_seed"]

Prompt = Any  # str | list[dict] (chat messages)


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


class HookedModel(ModelContractMixin, TokenizationMixin, GenerationMixin):
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
        self._embed_norm = arch.get(hf_model, arch.embed_norm) if arch.embed_norm else None
        self._refs: dict[str, torch.nn.Module] = {}
        self._roles: list[dict[str, torch.nn.Module]] = []
        for i in range(len(self._layers)):
            self._refs[arch.layer_path(i)] = self._layers[i]
            roles = {}
            for role, rel in arch.layer_rels().items():
                if role == "router" and not arch.has_router(i):
                    continue
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
            # TransformerLens's adapters hard-code where a router's logits sit in its output tuple, which
            # transformers has reordered (GraniteMoe): follow the installed code's layout (found at load)
            compat.align_bridge_routers(self.bridge, dict(arch.router_layout or ()))
            self._backend = TLBackend(self.bridge, arch)
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
        or writes ``pattern`` switches to eager for its duration (:meth:`_attention_for`). Families with attention
        soft-capping (Gemma 2) stay eager under ``"auto"``: the fused kernels do not apply the cap (some transformers
        releases accept SDPA for them anyway, and the logits then differ: 1e-2 on a tiny Gemma 2, seen on CUDA)."""
        if requested not in ("auto", "eager", "sdpa", "flash_attention_2"):
            raise ValueError(f"attn_implementation must be 'auto', 'eager', 'sdpa' or 'flash_attention_2', got {requested!r}")
        if self.backend_name == "tl":
            return "transformer_lens"
        want = "sdpa" if requested == "auto" else requested
        if requested == "auto" and getattr(self.hf_config, "attn_logit_softcapping", None):
            want = "eager"
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
        if s.kind == "router" and not self.arch.has_router(s.layer):
            raise SiteError(f"layer {s.layer} of {self.name} has a dense MLP, no router; its mixture-of-experts layers "
                            f"are {', '.join(map(str, self.arch.moe_layers or ()))}")
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
                if k == "resid_mid" and self.facts.parallel_attn_mlp or k == "router" and not self.arch.has_router(L) \
                        or k in ("q", "k", "v") and self.arch.qkv == "fused":
                    continue
                out.append(Site(k, L))
        return out

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

        def capture_fn(c: _Capture, live: bool = True):
            def fn(x):
                y = x if c.keep_graph else x.detach()
                if c.keep_graph:
                    grad_targets[c.site] = x
                if c.select is not None:
                    y = c.select(y)
                dev = c.device or (out_device if self._dispatched else None)  # a split model's caches on one device
                if c.dtype is not None or dev is not None:
                    y = y.to(device=dev or y.device, dtype=c.dtype or y.dtype)
                if live and y.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
                    # a snapshot, not a view of the model's live tensor: some families update a module's
                    # output in place after it returns (Falcon adds the attention output to the MLP's with `+=`)
                    y = y.clone()
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
                    capture_fn(c, live=False)(new)  # computed here, not the model's tensor
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
