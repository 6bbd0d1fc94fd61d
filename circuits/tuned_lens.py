"""Tuned lens (Belrose et al. 2023, "Eliciting Latent Predictions from Transformers with the Tuned Lens").

One affine *translator* per stage maps the residual ``h_l`` to ``h_l + A_l h_l + b_l`` before the
model's own final norm and unembedding; ``A_l, b_l`` start at zero (so training starts from the
logit lens, as in the paper) and are trained to minimise ``KL(p_final || p_lens)`` over the tokens of
a text set. The model is frozen; the last stage (``resid_post`` of the last layer) is the model's
output and its translator stays the identity.

Training details (ours, stated because they differ from the paper's SGD-Nesterov recipe): Adam on
minibatches of tokens (the bias parametrised in units of the stage's residual RMS, ``A``'s learning rate
divided by ``sqrt(d_model)``), all stages trained together from one shared final distribution per minibatch;
per stage, the parameters with the lowest KL on a validation split of the *training* texts are kept
(step 0 = the logit lens is a candidate), so a stage can never end worse than the logit lens on the
validation split. Evaluate on held-out text (:func:`compare_lenses`).

Weights are saved as safetensors (``A``: ``[stages, d, d]``, ``b``: ``[stages, d]``) with JSON metadata
(model name and weights hash, stages, training settings).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from workbench.results import Provenance, data_hash
from workbench.stats import Estimate, mean_estimate

from .lens import LensResult, lens_from_residuals, residual_stack

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["TunedLens", "train_tuned_lens", "TunedLensTraining", "LensComparison", "compare_lenses",
           "collect_residuals"]


@dataclass
class TunedLens:
    """Per-stage affine translators ``h -> h + h A_s + b_s`` (stage 0 = embeddings, stage L+1 = resid_post.L)."""

    A: torch.Tensor  # [stages, d, d]
    b: torch.Tensor  # [stages, d]
    model_name: str
    model_hash: str
    meta: dict = field(default_factory=dict)

    @property
    def n_stages(self) -> int:
        return self.A.shape[0]

    @classmethod
    def identity(cls, model: Model) -> "TunedLens":
        S, d = model.n_layers + 1, model.facts.d_model
        return cls(torch.zeros(S, d, d), torch.zeros(S, d), model.name, model.weights_hash)

    def translate(self, stage: int, h: torch.Tensor) -> torch.Tensor:
        A, b = self.A[stage].to(h.device, h.dtype), self.b[stage].to(h.device, h.dtype)
        return h + h @ A + b

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (a ``.safetensors`` file) with the translators and JSON metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"model_name": self.model_name, "model_hash": self.model_hash, "meta": json.dumps(self.meta),
                "format": "circuits.tuned_lens/1"}
        tmp = path.with_suffix(path.suffix + ".partial")
        save_file({"A": self.A.contiguous(), "b": self.b.contiguous()}, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, model: Any | None = None) -> "TunedLens":
        """Load a saved lens; with ``model``, check it was trained for these weights (hash) and width."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            A, b = f.get_tensor("A"), f.get_tensor("b")
        lens = cls(A, b, meta.get("model_name", "?"), meta.get("model_hash", "?"), json.loads(meta.get("meta", "{}")))
        if model is not None:
            if A.shape[1] != model.facts.d_model or A.shape[0] != model.n_layers + 1:
                raise ValueError(f"tuned lens {path} has {A.shape[0]} stages of width {A.shape[1]}, but {model.name} "
                                 f"needs {model.n_layers + 1} of width {model.facts.d_model}")
            if lens.model_hash != model.weights_hash:
                raise ValueError(f"tuned lens {path} was trained on weights {lens.model_hash} ({lens.model_name}); this "
                                 f"model's weights hash is {model.weights_hash}. Retrain it for this model.")
        return lens

    def __call__(self, model: Model, prompts: Any, *, targets: Any = None, k: int = 5, **tokenize_kw) -> LensResult:
        """Tuned-lens readings of ``prompts`` (same fields as :func:`circuits.logit_lens`)."""
        tokens, resid, logits = residual_stack(model, prompts, **tokenize_kw)
        return lens_from_residuals(model, tokens, resid, logits, translate=self.translate, lens="tuned",
                                   targets=targets, k=k)


@dataclass
class _Residuals:
    resid: torch.Tensor  # [stages, n_tokens, d] at real tokens
    groups: np.ndarray   # [n_tokens] prompt index of each token


@torch.inference_mode()
def collect_residuals(model: Model, texts: Sequence[str], *, batch_size: int = 16, skip_first: int = 1,
                      max_tokens_per_text: int = 64) -> _Residuals:
    """Residuals at every stage for the real tokens of ``texts`` (the first ``skip_first`` tokens dropped:
    the first position's residual is an outlier in many models and carries no context)."""
    chunks, groups = [], []
    for i in range(0, len(texts), batch_size):
        batch = list(texts[i:i + batch_size])
        tokens, resid, _ = residual_stack(model, batch)
        m = tokens.attention_mask.bool().clone()
        for r in range(len(batch)):
            idx = torch.nonzero(m[r]).flatten()
            m[r, idx[:skip_first]] = False
            m[r, idx[skip_first + max_tokens_per_text:]] = False
        chunks.append(resid[:, m].float().cpu())
        groups.append((i + torch.nonzero(m)[:, 0]).cpu().numpy())
    return _Residuals(torch.cat(chunks, 1), np.concatenate(groups))


@dataclass
class TunedLensTraining:
    """What training did: per-stage validation KL of the logit lens and of the kept translator."""

    lens: TunedLens
    val_kl_logit: list[float]
    val_kl_tuned: list[float]
    best_step: list[int]
    steps: int
    seconds: float
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({"stage_index": range(len(self.val_kl_logit)), "val_kl_logit": self.val_kl_logit,
                             "val_kl_tuned": self.val_kl_tuned, "best_step": self.best_step})

    def summary(self) -> str:
        """Validation KL to the final distribution, logit vs tuned lens, averaged over the stages."""
        n = len(self.val_kl_logit)
        lo, tu = sum(self.val_kl_logit) / n, sum(self.val_kl_tuned) / n
        better = sum(t < g for t, g in zip(self.val_kl_tuned, self.val_kl_logit))
        return (f"tuned lens trained for {self.steps} steps ({self.seconds:.0f} s): mean validation KL {tu:.3g} vs "
                f"{lo:.3g} for the logit lens; lower at {better} of {n} stages")


def _kl(lens_logits: torch.Tensor, final_logp: torch.Tensor) -> torch.Tensor:
    lp = lens_logits.log_softmax(-1)
    return (final_logp.exp() * (final_logp - lp)).sum(-1)


def train_tuned_lens(model: Model, texts: Sequence[str], *, steps: int = 100, batch_tokens: int = 64, lr: float = 1e-3,
                     val_fraction: float = 0.15, eval_every: int = 10, seed: int = 0, max_tokens_per_text: int = 64,
                     stages: Sequence[int] | None = None, max_val_tokens: int = 256,
                     progress: bool = False) -> TunedLensTraining:
    """Train a :class:`TunedLens` on ``texts`` (keep held-out text for :func:`compare_lenses`).

    Args:
        texts: training text; a ``val_fraction`` of it (by text) is the validation split for model selection.
        steps: optimisation steps; each uses ``batch_tokens`` tokens for every stage.
        lr: Adam learning rate.
        stages: which stages to train (default all but the last, whose lens is exact).
        max_val_tokens: validation tokens used for model selection (a random subset when there are more).
        seed: token sampling and the validation split.
    """
    t0 = time.time()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=gen).tolist()
    n_val = max(1, int(round(val_fraction * len(texts))))
    val_texts = [texts[i] for i in order[:n_val]]
    train_texts = [texts[i] for i in order[n_val:]]
    tr = collect_residuals(model, train_texts, max_tokens_per_text=max_tokens_per_text)
    va = collect_residuals(model, val_texts, max_tokens_per_text=max_tokens_per_text)
    S, _, d = tr.resid.shape
    train_stages = list(range(S - 1)) if stages is None else list(stages)
    lens = TunedLens.identity(model)
    dev = model.device  # residuals stay on the CPU; each batch and the translators live on the model's device

    def lens_logits(h):
        return model.unembed(h.to(dev), fp32=True).float()

    if va.resid.shape[1] > max_val_tokens:  # bound the cost of model selection (full-vocabulary KL)
        keep = torch.randperm(va.resid.shape[1], generator=gen)[:max_val_tokens]
        va = _Residuals(va.resid[:, keep], va.groups[keep.numpy()])
    with torch.no_grad():
        va_final_logp = lens_logits(va.resid[-1]).log_softmax(-1)
    # Scale-free parametrisation: b_s = r_s * c_s with r_s the stage's residual RMS, and A's learning rate
    # divided by sqrt(d_model), so one Adam step changes the translated residual by a similar *relative* amount
    # at every depth (residual norms grow by orders of magnitude through the network).
    rms = {s: float(tr.resid[s].pow(2).mean().sqrt()) for s in train_stages}
    params = {s: (torch.zeros(d, d, device=dev, requires_grad=True), torch.zeros(d, device=dev, requires_grad=True))
              for s in train_stages}
    opt = torch.optim.Adam([{"params": [params[s][0] for s in train_stages], "lr": lr / math.sqrt(d)},
                            {"params": [params[s][1] for s in train_stages], "lr": lr}])

    def affine(s, h, A, c):
        h = h.to(dev)
        return h + h @ A + rms[s] * c

    @torch.no_grad()
    def val_kl(s, A, c):
        return float(_kl(lens_logits(affine(s, va.resid[s], A, c)), va_final_logp).mean())

    best = {s: (val_kl(s, *params[s]), 0, params[s][0].detach().clone(), params[s][1].detach().clone())
            for s in train_stages}
    val_logit = {s: best[s][0] for s in train_stages}
    n_tr = tr.resid.shape[1]
    it = range(1, steps + 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="train tuned lens", unit="step")
    with torch.enable_grad():
        for step in it:
            idx = torch.randint(0, n_tr, (batch_tokens,), generator=gen)
            with torch.no_grad():
                target = lens_logits(tr.resid[-1, idx]).log_softmax(-1)
            opt.zero_grad(set_to_none=True)
            for s in train_stages:
                loss = _kl(lens_logits(affine(s, tr.resid[s, idx], *params[s])), target).mean()
                loss.backward()
            opt.step()
            if step % eval_every == 0 or step == steps:
                for s in train_stages:
                    v = val_kl(s, *params[s])
                    if v < best[s][0]:
                        best[s] = (v, step, params[s][0].detach().clone(), params[s][1].detach().clone())
    for s in train_stages:
        lens.A[s], lens.b[s] = best[s][2].cpu(), rms[s] * best[s][3].cpu()
    settings = dict(steps=steps, batch_tokens=batch_tokens, lr=lr, lr_A=lr / math.sqrt(d), val_fraction=val_fraction, seed=seed,
                    max_tokens_per_text=max_tokens_per_text, n_train_tokens=int(n_tr),
                    n_val_tokens=int(va.resid.shape[1]), train_texts_hash=data_hash(list(texts)))
    lens.meta = settings
    prov = model.provenance(data_hash=data_hash(list(texts)), seed=seed, extra={"method": "tuned_lens", **settings})
    vk = [val_logit.get(s, 0.0) for s in range(S)]
    vt = [best[s][0] if s in best else 0.0 for s in range(S)]
    bs = [best[s][1] if s in best else 0 for s in range(S)]
    return TunedLensTraining(lens, vk, vt, bs, steps, time.time() - t0, prov)


@dataclass
class LensComparison:
    """Logit lens vs tuned lens on held-out text, per stage: mean KL to the final distribution and top-1
    agreement with cluster-bootstrap CIs over texts, and the paired KL difference (tuned - logit)."""

    stages: list[str]
    kl_logit: list[Estimate]
    kl_tuned: list[Estimate]
    kl_diff: list[Estimate]
    agree_logit: list[Estimate]
    agree_tuned: list[Estimate]
    n_texts: int
    n_tokens: int
    provenance: Provenance = field(default_factory=Provenance)

    def summary(self) -> str:
        """At how many stages the tuned lens is closer to the final distribution (paired CI below zero)."""
        inner = range(len(self.stages) - 1)
        better = sum(self.kl_diff[s].ci_high < 0 for s in inner)
        worse = sum(self.kl_diff[s].ci_low > 0 for s in inner)
        mid = len(self.stages) // 2
        return (f"tuned vs logit lens on {self.n_texts} held-out texts ({self.n_tokens} tokens): KL lower at {better}, "
                f"higher at {worse} of {len(inner)} stages before the output; at stage {self.stages[mid]}: KL "
                f"{self.kl_tuned[mid].value:.3g} vs {self.kl_logit[mid].value:.3g}, difference {self.kl_diff[mid]}")

    def tuned_better_everywhere(self, stages: Sequence[int] | None = None) -> bool:
        """True when the tuned lens's KL is below the logit lens's at every stage (default all but the last),
        with the paired difference's CI entirely below zero."""
        idx = range(len(self.stages) - 1) if stages is None else stages
        return all(self.kl_diff[s].ci_high < 0 for s in idx)

    def to_dataframe(self):
        import pandas as pd

        rows = []
        for s, name in enumerate(self.stages):
            for lens, kl, ag in (("logit", self.kl_logit[s], self.agree_logit[s]),
                                 ("tuned", self.kl_tuned[s], self.agree_tuned[s])):
                rows.append({"stage": name, "stage_index": s, "lens": lens, "kl": kl.value, "kl_ci_low": kl.ci_low,
                             "kl_ci_high": kl.ci_high, "top1_agree": ag.value, "agree_ci_low": ag.ci_low,
                             "agree_ci_high": ag.ci_high, "kl_diff_tuned_minus_logit": self.kl_diff[s].value,
                             "diff_ci_low": self.kl_diff[s].ci_low, "diff_ci_high": self.kl_diff[s].ci_high,
                             "n_texts": self.n_texts, "n_tokens": self.n_tokens})
        return pd.DataFrame(rows)


@torch.inference_mode()
def compare_lenses(model: Model, lens: TunedLens, texts: Sequence[str], *, seed: int = 0, n_resamples: int = 1000,
                   max_tokens_per_text: int = 64) -> LensComparison:
    """Evaluate the logit lens and ``lens`` on the same (held-out) ``texts``."""
    res = collect_residuals(model, texts, max_tokens_per_text=max_tokens_per_text)
    S = res.resid.shape[0]
    dev = model.device

    def head_norm(h):
        return model.unembed(h, fp32=True).float()
    final_logp = head_norm(res.resid[-1].to(dev)).log_softmax(-1)
    final_top = final_logp.argmax(-1)
    kl_l, kl_t, diff, ag_l, ag_t = [], [], [], [], []
    g = res.groups
    for s in range(S):
        h = res.resid[s].to(dev)
        ll = head_norm(h)
        lt = head_norm(lens.translate(s, h))
        kl1, kl2 = _kl(ll, final_logp).double().cpu().numpy(), _kl(lt, final_logp).double().cpu().numpy()
        a1 = (ll.argmax(-1) == final_top).double().cpu().numpy()
        a2 = (lt.argmax(-1) == final_top).double().cpu().numpy()
        kw = dict(groups=g, seed=seed, n_resamples=n_resamples)
        kl_l.append(mean_estimate(kl1, **kw))
        kl_t.append(mean_estimate(kl2, **kw))
        diff.append(mean_estimate(kl2 - kl1, **kw) if s < S - 1 else _zero(len(texts)))
        ag_l.append(mean_estimate(a1, **kw))
        ag_t.append(mean_estimate(a2, **kw))
    stages = ["embed"] + [str(L) for L in range(S - 1)]
    prov = model.provenance(data_hash=data_hash(list(texts)), seed=seed,
                            extra={"method": "compare_lenses", "lens_meta": lens.meta})
    return LensComparison(stages, kl_l, kl_t, diff, ag_l, ag_t, len(texts), int(res.resid.shape[1]), prov)


def _zero(n: int) -> Estimate:
    return Estimate(0.0, 0.0, 0.0, n=n, method="exact (last stage: both lenses are the model's output)")

