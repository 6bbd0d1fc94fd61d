"""Logit lens (nostalgebraist 2020), LayerNorm folding and direct logit attribution.

The logit lens reads each layer's residual stream with the model's own unembedding:
``logits_l = W_U(final_norm(h_l))`` (+ bias). For every layer and position it reports the top-k
tokens, the probability and rank of target tokens, ``KL(p_final || p_lens)`` (nats) and whether the
lens's top-1 token equals the model's final top-1 token (Belrose et al. 2023, "Eliciting Latent
Predictions from Transformers with the Tuned Lens", use the same two metrics).

Folding
-------
``unembed(final_norm(h))`` does not depend on how the weights are parametrised, but the *residual
coordinates* do. :func:`fold_unembed` folds the final norm's weight (and bias) into the unembedding
explicitly, as TransformerLens's ``fold_ln`` does (Elhage et al. 2021, "A Mathematical Framework"):

- RMSNorm: ``W_U' = diag(w) W_U``; ``logits = (h / rms(h)) W_U'``.
- LayerNorm: ``W_U' = diag(w) W_U`` centred over ``d_model`` (``W_U' -= W_U'.mean(0)``, which absorbs the
  mean subtraction), ``b_U' = b_U + b W_U``; ``logits = h W_U' / std(h) + b_U'``.

The lens computed with the folded unembedding equals the raw lens (tested to 1e-4), and in folded
coordinates the logit of a token is *linear* in the residual given the (frozen) final scale, so the
final residual's decomposition into embedding, attention and MLP outputs (and heads) gives a direct
logit attribution (DLA) whose terms sum exactly to the model's logit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench.results import Provenance, data_hash
from workbench.sites import Site
from workbench.stats import mean_estimate

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["FoldedUnembed", "fold_unembed", "LensResult", "logit_lens", "lens_from_residuals",
           "DLAResult", "direct_logit_attribution", "residual_stack", "at_last_token", "resolution_stages"]


@dataclass
class FoldedUnembed:
    """The final norm folded into the unembedding (see the module docstring)."""

    W_U: torch.Tensor  # [d_model, d_vocab]
    b_U: torch.Tensor  # [d_vocab]
    norm: str          # "rms" | "ln"
    eps: float
    softcap: float | None = None  # final-logit soft-capping (Gemma 2): cap * tanh(logits / cap)

    def scale(self, h: torch.Tensor) -> torch.Tensor:
        """The final norm's per-position scale ``rms(h)`` or ``std(h)`` (``[..., 1]``)."""
        h = h.float()
        if self.norm == "rms":
            return (h.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        hc = h - h.mean(-1, keepdim=True)
        return (hc.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Lens logits of residual vectors ``h`` (``[..., d_model]``; moved to the lens's device)."""
        h = h.to(self.W_U.device).float()
        logits = (h / self.scale(h)) @ self.W_U + self.b_U
        return torch.tanh(logits / self.softcap) * self.softcap if self.softcap else logits


def _norm_eps(mod: torch.nn.Module) -> float:
    for name in ("variance_epsilon", "eps"):
        if hasattr(mod, name):
            return float(getattr(mod, name))
    return 1e-5


def fold_unembed(model: Model) -> FoldedUnembed:
    """Fold ``model``'s final norm into its unembedding (RMSNorm, Gemma's ``(1 + w)`` RMSNorm, or LayerNorm),
    in float32, with the family's final-logit soft-capping."""
    norm_mod = model.final_norm_module
    W = model.W_U.detach().float()  # [d, V]
    head_b = getattr(model.unembed_module, "bias", None)
    b = torch.zeros(W.shape[1], device=W.device) if head_b is None else head_b.detach().float()
    w = model.norm_weight(norm_mod).to(W.device)
    cap = model.arch.final_logit_softcap
    if model.arch.logit_scale:  # Cohere scales the logits: fold it into the unembedding
        W, b = W * model.arch.logit_scale, b * model.arch.logit_scale
    if model.facts.normalization == "rms":
        return FoldedUnembed(w[:, None] * W, b, "rms", _norm_eps(norm_mod), cap)
    nb = getattr(norm_mod, "bias", None)
    W2 = w[:, None] * W
    if nb is not None:
        b = b + nb.detach().float().to(W.device) @ W
    W2 = W2 - W2.mean(0, keepdim=True)
    return FoldedUnembed(W2, b, "ln", _norm_eps(norm_mod), cap)


def residual_stack(model: Model, inputs: Any, **tokenize_kw: Any):
    """``(tokens, resid [n_layers + 1, B, T, d], final logits)``: the embedding and every ``resid_post``."""
    sites = [Site("resid_pre", 0)] + [Site("resid_post", L) for L in range(model.n_layers)]
    logits, cache = model.run_with_cache(inputs, sites, **tokenize_kw)
    resid = torch.stack([cache[s] for s in sites])
    return cache.tokens, resid, logits


@dataclass
class LensResult:
    """Logit-lens (or tuned-lens) readings per stage and position.

    Stages are ``"embed"`` (the token embedding, ``resid_pre.0``) and ``0..n_layers-1``
    (``resid_post.L``); the last stage's lens is the model's output by construction.

    Attributes:
        lens: ``"logit"`` or ``"tuned"``; coordinates: ``"raw"`` or ``"folded"``.
        kl: ``[stages, B, T]`` ``KL(p_final || p_lens)`` in nats (NaN at padding).
        top1_agree: ``[stages, B, T]`` 1.0 where the lens's top token is the model's final top token.
        topk_ids, topk_probs: ``[stages, B, T, k]``.
        target_ids: ``[B]`` target token per prompt (or None); target_prob, target_rank: ``[stages, B, T]``.
        mask: ``[B, T]`` real tokens.
    """

    lens: str
    coordinates: str
    stages: list[str]
    kl: torch.Tensor
    top1_agree: torch.Tensor
    topk_ids: torch.Tensor
    topk_probs: torch.Tensor
    mask: torch.Tensor
    str_tokens: list[list[str]]
    topk_strs: list  # [stage][b][t][k] decoded tokens (only for B*T <= 4096)
    target_ids: torch.Tensor | None = None
    target_prob: torch.Tensor | None = None
    target_rank: torch.Tensor | None = None
    provenance: Provenance = field(default_factory=Provenance)

    def per_stage(self, metric: str = "kl", seed: int = 0, n_resamples: int = 1000, position: int | None = None):
        """Mean of ``metric`` (``kl``, ``top1_agree``, ``target_prob``, ``target_rank``) per stage, with a
        cluster-bootstrap CI over prompts (tokens of a prompt are resampled together).

        ``position``: one position index into each prompt's real tokens (e.g. ``-1``), else every real token.
        Returns a list of :class:`workbench.stats.Estimate` (``n`` counts prompts).
        """
        x = getattr(self, metric)
        if x is None:
            raise ValueError(f"{metric} was not computed (pass targets= to logit_lens for target metrics)")
        out = []
        mask = self.mask.bool().cpu()
        if position is not None:
            last = torch.zeros_like(mask)
            for b in range(mask.shape[0]):
                idx = torch.nonzero(mask[b]).flatten()
                last[b, idx[position]] = True
            mask = last
        groups = torch.arange(mask.shape[0])[:, None].expand_as(mask)[mask].numpy()
        for s in range(len(self.stages)):
            vals = x[s][mask].double().numpy()
            out.append(mean_estimate(vals, groups=groups, seed=seed, n_resamples=n_resamples))
        return out

    def to_dataframe(self):
        """One row per (stage, prompt, position): KL, top-1 agreement, top-1 token, target prob/rank."""
        import pandas as pd

        S, B, T = self.kl.shape
        rows = []
        for s in range(S):
            for b in range(B):
                for t in range(T):
                    if not bool(self.mask[b, t]):
                        continue
                    r = {"stage": self.stages[s], "stage_index": s, "prompt": b, "pos": t,
                         "token": self.str_tokens[b][t], "kl": float(self.kl[s, b, t]),
                         "top1_agree": float(self.top1_agree[s, b, t]), "top1_id": int(self.topk_ids[s, b, t, 0]),
                         "top1_prob": float(self.topk_probs[s, b, t, 0])}
                    if self.topk_strs:
                        r["top1"] = self.topk_strs[s][b][t][0]
                        r["topk"] = "|".join(self.topk_strs[s][b][t])
                    if self.target_prob is not None:
                        r["target_prob"] = float(self.target_prob[s, b, t])
                        r["target_rank"] = int(self.target_rank[s, b, t])
                    rows.append(r)
        df = pd.DataFrame(rows)
        df["lens"], df["coordinates"] = self.lens, self.coordinates
        return df

    def summary_table(self, seed: int = 0):
        """Per-stage mean KL and top-1 agreement with bootstrap CIs over prompts (a DataFrame)."""
        import pandas as pd

        kl = self.per_stage("kl", seed=seed)
        ag = self.per_stage("top1_agree", seed=seed)
        rows = []
        for s, name in enumerate(self.stages):
            rows.append({"stage": name, "stage_index": s, "kl": kl[s].value, "kl_ci_low": kl[s].ci_low,
                         "kl_ci_high": kl[s].ci_high, "top1_agree": ag[s].value, "agree_ci_low": ag[s].ci_low,
                         "agree_ci_high": ag[s].ci_high, "n_prompts": kl[s].n})
        df = pd.DataFrame(rows)
        df["lens"] = self.lens
        return df

    def summary(self) -> str:
        """The first stage whose top-1 token agrees with the model's output on most tokens, and the KL there."""
        real = self.mask.bool().cpu()
        ag = self.top1_agree.cpu()[:, real].double().mean(-1)  # per stage, over every real token
        kl = self.kl.cpu()[:, real].double().mean(-1)
        first = next((s for s in range(len(self.stages)) if float(ag[s]) > 0.5), None)
        where = (f"top-1 agreement with the output first exceeds 50% at stage {self.stages[first]} "
                 f"({float(ag[first]):.2f}; mean KL to the final distribution {float(kl[first]):.3g})"
                 if first is not None else "top-1 agreement with the output never exceeds 50%")
        return (f"{self.lens} lens ({self.coordinates} coordinates) over {len(self.stages)} stages, "
                f"{self.mask.shape[0]} prompts: {where}; mean KL at the first stage {float(kl[0]):.3g}")


def _kl_final(lens_logits: torch.Tensor, final_logp: torch.Tensor) -> torch.Tensor:
    lp = lens_logits.float().log_softmax(-1)
    return (final_logp.exp() * (final_logp - lp)).sum(-1)


@torch.inference_mode()
def lens_from_residuals(model: Model, tokens: Any, resid: torch.Tensor, final_logits: torch.Tensor, *,
                        translate: Any = None, lens: str = "logit", coordinates: str = "raw",
                        targets: Any = None, k: int = 5, chunk: int = 2048) -> LensResult:
    """Lens readings from captured residuals ``resid [stages, B, T, d]`` (see :func:`logit_lens`).

    ``translate(stage_index, h) -> h'`` is applied before unembedding (the tuned lens's translators).
    """
    from .metrics import single_token_ids

    S, B, T, d = resid.shape
    folded = fold_unembed(model) if coordinates == "folded" else None
    if coordinates not in ("raw", "folded"):
        raise ValueError(f"coordinates must be 'raw' or 'folded', got {coordinates!r}")
    mask = tokens.attention_mask.bool().cpu()
    final_logp = final_logits.float().log_softmax(-1)
    final_top = final_logits.argmax(-1)
    tgt = None
    if targets is not None:
        tgt = single_token_ids(model, targets)
        if len(tgt) == 1 and B > 1:
            tgt = tgt.expand(B)
        if len(tgt) != B:
            raise ValueError(f"{len(tgt)} targets for {B} prompts; give one target token per prompt (or one for all)")
    kl = torch.zeros(S, B, T)
    agree = torch.zeros(S, B, T)
    tk_ids = torch.zeros(S, B, T, k, dtype=torch.long)
    tk_p = torch.zeros(S, B, T, k)
    tprob = torch.zeros(S, B, T) if tgt is not None else None
    trank = torch.zeros(S, B, T, dtype=torch.long) if tgt is not None else None
    flat_mask = mask.reshape(-1)
    idx = torch.nonzero(flat_mask).flatten()
    for s in range(S):
        h_all = resid[s].reshape(B * T, d)
        for i in range(0, len(idx), chunk):
            j = idx[i:i + chunk]
            h = h_all[j.to(h_all.device)]
            if translate is not None:
                h = translate(s, h)
            lg = folded.logits(h) if folded is not None else model.unembed(h, fp32=True).float()
            lg = lg.cpu()
            flp = final_logp.reshape(B * T, -1)[j.to(final_logp.device)].cpu()
            kl[s].view(-1)[j] = _kl_final(lg, flp)
            agree[s].view(-1)[j] = (lg.argmax(-1) == final_top.reshape(-1)[j.to(final_top.device)].cpu()).float()
            p = lg.softmax(-1)
            v, ii = p.topk(k, dim=-1)
            tk_ids[s].view(-1, k)[j], tk_p[s].view(-1, k)[j] = ii, v
            if tgt is not None:
                b_of = (j // T)
                tt = tgt[b_of]
                tprob[s].view(-1)[j] = p[torch.arange(len(j)), tt]
                tl = lg[torch.arange(len(j)), tt]
                trank[s].view(-1)[j] = (lg > tl[:, None]).sum(-1)
    kl[:, ~mask] = float("nan")
    str_tokens = [[model.tokenizer.decode([int(t)]) for t in tokens.input_ids[b]] for b in range(B)]
    topk_strs = []
    if S * B * T * k <= 200_000:
        dec = {}
        for s in range(S):
            topk_strs.append([[[dec.setdefault(int(t), model.tokenizer.decode([int(t)])) for t in tk_ids[s, b, p]]
                               for p in range(T)] for b in range(B)])
    stages = ["embed"] + [str(L) for L in range(S - 1)]
    prov = model.provenance(data_hash=data_hash(tokens.input_ids), sites=("resid_pre.0",) + tuple(
        f"resid_post.{L}" for L in range(S - 1)), extra={"method": f"{lens}_lens", "coordinates": coordinates, "k": k})
    return LensResult(lens, coordinates, stages, kl, agree, tk_ids, tk_p, mask, str_tokens, topk_strs,
                      tgt, tprob, trank, prov)


def logit_lens(model: Model, prompts: Any, *, targets: Any = None, k: int = 5, coordinates: str = "raw",
               **tokenize_kw: Any) -> LensResult:
    """The logit lens on ``prompts`` at every layer and position.

    Args:
        prompts: a string, a list of strings, or :class:`Tokens`.
        targets: a token (``" Paris"``) or one per prompt: its probability and rank are reported.
        k: how many top tokens to keep.
        coordinates: ``"raw"`` (``unembed(final_norm(h))``) or ``"folded"`` (the folded unembedding of
            :func:`fold_unembed`; the same numbers up to float rounding).
    """
    tokens, resid, logits = residual_stack(model, prompts, **tokenize_kw)
    return lens_from_residuals(model, tokens, resid, logits, targets=targets, k=k, coordinates=coordinates)


# --------------------------------------------------------------------------------------------------------
# Direct logit attribution
# --------------------------------------------------------------------------------------------------------

@dataclass
class DLAResult:
    """Direct logit attribution in folded coordinates at one position per prompt.

    ``components``: names (``embed``, ``attn.L``, ``mlp.L``, ``bias`` and, with heads, ``L.hH``);
    ``values``: ``[n_components, B]`` contribution to the metric (a token's logit, or a logit difference);
    ``total``: ``[B]`` the model's actual metric; ``residual_error``: ``max |sum - total|`` (the check that the
    decomposition is exact). Head rows decompose the ``attn.L`` rows further (they are not added twice
    in ``values_sum``).
    """

    components: list[str]
    values: torch.Tensor
    total: torch.Tensor
    head_values: torch.Tensor | None  # [n_layers, n_heads, B]
    residual_error: float
    target: str
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        B = self.values.shape[1]
        for i, c in enumerate(self.components):
            rows.append({"component": c, "kind": c.split(".")[0], "mean": float(self.values[i].mean()),
                         "std": float(self.values[i].std()) if B > 1 else float("nan"), "n_prompts": B})
        if self.head_values is not None:
            L, H, _ = self.head_values.shape
            for layer in range(L):
                for h in range(H):
                    v = self.head_values[layer, h]
                    rows.append({"component": f"{layer}.h{h}", "kind": "head", "mean": float(v.mean()),
                                 "std": float(v.std()) if B > 1 else float("nan"), "n_prompts": B})
        df = pd.DataFrame(rows)
        df["target"] = self.target
        return df

    def summary(self) -> str:
        """The metric, its three largest contributors and the decomposition's residual error."""
        mean = self.values.mean(-1)
        order = torch.argsort(mean.abs(), descending=True)[:3]
        top = ", ".join(f"{self.components[int(i)]} {float(mean[i]):+.3g}" for i in order)
        return (f"direct logit attribution of {self.target} over {self.values.shape[1]} prompts (mean "
                f"{float(self.total.mean()):.3g}): largest contributions {top}; decomposition error "
                f"{self.residual_error:.2g}")


@torch.inference_mode()
def direct_logit_attribution(model: Model, prompts: Any, correct: Any, wrong: Any = None, *, heads: bool = True,
                             position: int = -1, **tokenize_kw: Any) -> DLAResult:
    """Decompose the final residual at ``position`` into components and read each with the folded unembedding.

    The metric is the logit of ``correct`` (or ``logit[correct] - logit[wrong]``); the final norm's scale is
    frozen at its value on the full residual, so the contributions sum exactly to the model's metric.
    """
    from .metrics import single_token_ids

    N = model.n_layers
    kinds = [Site("resid_pre", 0)] + [Site(k, L) for L in range(N) for k in ("attn_out", "mlp_out")]
    if heads:
        kinds += [Site("z", L) for L in range(N)]
    kinds += [Site("resid_post", N - 1)]
    logits, cache = model.run_with_cache(prompts, kinds, **tokenize_kw)
    tokens = cache.tokens
    B, T = tokens.shape
    pos = tokens.last_index if position == -1 else tokens.starts + (position if position >= 0 else tokens.lengths + position)
    ar = torch.arange(B)

    def at(x):
        return x[ar, pos.to(x.device)]
    c = single_token_ids(model, correct).expand(B) if len(single_token_ids(model, correct)) == 1 else single_token_ids(model, correct)
    w = None
    if wrong is not None:
        w = single_token_ids(model, wrong)
        w = w.expand(B) if len(w) == 1 else w
    fu = fold_unembed(model)
    final = at(cache[Site("resid_post", N - 1)]).float()
    parts, names = [at(cache[Site("resid_pre", 0)])], ["embed"]
    for L in range(N):
        parts += [at(cache[Site("attn_out", L)]), at(cache[Site("mlp_out", L)])]
        names += [f"attn.{L}", f"mlp.{L}"]
    P = torch.stack(parts).float()  # [C, B, d]
    if fu.norm == "ln":  # centring is folded into W_U, so each part's mean is removed implicitly
        pass
    dirv = fu.W_U[:, c].T  # [B, d]
    bias = fu.b_U[c]
    if w is not None:
        dirv = dirv - fu.W_U[:, w].T
        bias = bias - fu.b_U[w]
    scale = fu.scale(final)[:, 0]  # [B]
    vals = (P * dirv[None]).sum(-1) / scale[None]
    # residual not covered by the named parts (e.g. attention output biases are inside attn_out already)
    other = final - P.sum(0)
    rest = (other * dirv).sum(-1) / scale
    vals = torch.cat([vals, rest[None], bias[None]])
    names += ["other", "bias"]
    lg = logits[ar, pos.to(logits.device)].float()
    total = lg[ar, c] - (lg[ar, w] if w is not None else 0)
    err = float((vals.sum(0) - total).abs().max())
    hv = None
    if heads:
        hv = torch.zeros(N, model.facts.n_heads, B)
        for L in range(N):
            z = at(cache[Site("z", L)]).float()  # [B, H, dh]
            ho = torch.einsum("bhd,hdm->bhm", z, model.W_O(L).detach().float())
            hv[L] = ((ho * dirv[:, None]).sum(-1) / scale[:, None]).T
    tname = str(correct) + (f" - {wrong}" if wrong is not None else "")
    prov = model.provenance(data_hash=data_hash(tokens.input_ids), sites=tuple(s.name for s in kinds),
                            extra={"method": "direct_logit_attribution", "coordinates": "folded", "position": position})
    return DLAResult(names, vals.cpu(), total.cpu(), hv, err, tname, prov)  # results live on the CPU


def at_last_token(result: LensResult, metric: str = "target_prob") -> np.ndarray:
    """``metric`` (``target_prob``, ``target_rank``, ``kl``, ``top1_agree``) at each prompt's last real token:
    ``[stages, B]`` (either padding side)."""
    x = getattr(result, metric)
    if x is None:
        raise ValueError(f"{metric} was not computed (pass targets= to logit_lens for target metrics)")
    last = result.mask.long().cumsum(1).argmax(1)
    return x[:, torch.arange(x.shape[1]), last].cpu().numpy()


def resolution_stages(result: LensResult) -> np.ndarray:
    """Per prompt, the *resolution stage*: the index of the first stage from which the target stays the lens's
    top-1 token at the last real token through the output; ``len(stages)`` (one past the last) for a prompt whose
    output does not rank the target first. ``[B]`` floats."""
    top1 = at_last_token(result, "target_rank") == 0  # ranks are 0-based (tokens with a higher logit)
    S, B = top1.shape
    depth = np.full(B, float(S))
    for b in range(B):
        if top1[-1, b]:
            s = S - 1
            while s > 0 and top1[s - 1, b]:
                s -= 1
            depth[b] = s
    return depth
