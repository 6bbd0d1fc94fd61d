"""Head ablations (zero, mean, resample), the ICL score and the induction-head ablation protocol.

Ablations are :class:`workbench.interventions.Intervention` objects on ``z`` (the head's output before
``W_O``), so they run on either backend and inside ``model.hooks(...)``:

- ``zero``: ``z[h] = 0``;
- ``mean``: ``z[h]`` = its mean over the real tokens of a reference set (per head, all positions);
- ``resample``: ``z[h]`` taken from a different input of the same shape (rows of a reference batch,
  permuted with a seed) -- the "resample ablation" of Chan et al. (2022, causal scrubbing).

Induction protocol
------------------
Olsson et al. (2022): the *ICL score* is the loss at a late token minus the loss at an early token
(token 500 minus token 50 in the paper); induction heads lower it. "Induction Signatures Are Not
Enough" (2025) ablates the top 2% induction heads *per layer* and compares with matched random heads.
:func:`induction_protocol` does this:

1. score every head on repeated random tokens (:func:`circuits.heads.head_scores`, ``"target"`` measure);
2. per layer keep ``n = max(1, ceil(k% x n_heads))`` heads with the highest score (the rounding rule; with
   9 heads and 2%, one head per layer);
3. ablate them, and ``n_random`` matched random sets (the same number per layer, drawn uniformly from the
   layer's heads excluding the targeted ones where the layer has enough heads);
4. measure the loss on the repeated half of fresh repeated-random-token sequences (the behaviour induction
   heads implement), the copy accuracy there, the per-token log-prob of a repeated random *text* through the
   shared scorer ``workbench.scorers.logprob.target_logprob``, and the ICL score on given text;
5. report the targeted and random effects per sequence and the paired difference (targeted minus the mean
   over random sets) with bootstrap CIs over sequences.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from workbench.errors import check_count
from workbench.interventions import Intervention, mean_ablate, replace, zero_ablate
from workbench.results import Provenance, data_hash
from workbench.sites import Site
from workbench.stats import Estimate, mean_estimate

from .heads import HeadScores, head_scores, repeated_random_tokens

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["copy_task", "head_ablation", "ICLScore", "icl_score", "repeated_half_loss", "InductionProtocolResult",
           "induction_protocol", "top_heads_per_layer", "rounding_rule"]

Head = tuple[int, int]


def _by_layer(heads: Sequence[Head]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for L, h in heads:
        out.setdefault(int(L), []).append(int(h))
    return out


@torch.inference_mode()
def head_ablation(model: Model, heads: Sequence[Head], method: str = "zero", *, reference: Any = None,
                  seed: int = 0) -> list[Intervention]:
    """Interventions that ablate ``heads`` (``[(layer, head), ...]``) by ``method``.

    ``reference``: prompts/tokens for ``mean`` (the mean over their real tokens) and ``resample`` (their
    ``z``, rows permuted with ``seed``; the evaluated input must then have the reference's shape).
    """
    groups = _by_layer(heads)
    if method == "zero":
        return [zero_ablate(f"z.{L}", heads=hs, label="zero-ablate") for L, hs in groups.items()]
    if reference is None:
        raise ValueError(f"{method} ablation needs reference= inputs (a batch of prompts or tokens)")
    sites = [Site("z", L) for L in groups]
    _, cache = model.run_with_cache(reference, sites, logits=None)
    if method == "mean":
        return [mean_ablate(f"z.{L}", cache.real(Site("z", L)).mean(0), heads=hs, label="mean-ablate")
                for L, hs in groups.items()]
    if method == "resample":
        z0 = cache[Site("z", next(iter(groups)))]
        B = z0.shape[0]
        if B < 2:
            raise ValueError("resample ablation needs a reference batch of at least 2 inputs")
        gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(B, generator=gen)
        if bool((perm == torch.arange(B)).any()):  # a derangement: no row keeps its own activation
            perm = torch.roll(torch.arange(B), 1)
        return [replace(f"z.{L}", cache[Site("z", L)][perm.to(z0.device)], heads=hs, label="resample-ablate")
                for L, hs in groups.items()]
    raise ValueError(f"method must be 'zero', 'mean' or 'resample', got {method!r}")


def _rows(model: Model, interventions: Any, i: int, j: int, B: int) -> Any:
    """The interventions for rows ``i:j`` of a ``B``-row batch: full-activation values with one row per input
    (resample ablation, patching in another batch's activations) are sliced to the same rows."""
    if interventions is None:
        return None
    single = isinstance(interventions, Intervention)
    out = []
    for iv in ([interventions] if single else list(interventions)):
        v = iv.value
        if (isinstance(iv, Intervention) and isinstance(v, torch.Tensor)
                and v.ndim == len(iv.feature_shape(model.facts)) + 2 and v.shape[0] == B):
            iv = dataclasses.replace(iv, value=v[i:j])
        out.append(iv)
    return out[0] if single else out


def _token_losses(model: Model, tokens: torch.Tensor, interventions: Any = None, batch_size: int = 16,
                  predictions: bool = False) -> Any:
    """``[B, T-1]`` next-token losses (nats) of unpadded token rows; with ``predictions`` also the
    ``[B, T-1]`` argmax next-token predictions from the same forward passes."""
    out, preds = [], []
    B = tokens.shape[0]
    with torch.inference_mode():
        for i in range(0, B, batch_size):
            ids = tokens[i:i + batch_size]
            logits = model.forward(ids, interventions=_rows(model, interventions, i, i + len(ids), B)).float()
            lp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None].to(logits.device))[..., 0]
            out.append(-lp.cpu())
            if predictions:
                preds.append(logits[:, :-1].argmax(-1).cpu())
    return (torch.cat(out), torch.cat(preds)) if predictions else torch.cat(out)


def repeated_half_loss(model: Model, tokens: torch.Tensor, half: int, interventions: Any = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence mean loss and copy accuracy on the second copy of ``[BOS?] + s + s`` (``len(s) == half``).

    The first token of the second copy is excluded (nothing before it predicts it); the loss is over the
    remaining ``half - 1`` tokens, each predictable by induction. Both come from one forward pass per batch.
    """
    T = tokens.shape[1]
    start = T - half + 1  # index of the second token of the second copy
    losses, preds = _token_losses(model, tokens, interventions, predictions=True)  # [:, t] predicts token t + 1
    sel = losses[:, start - 1:]
    acc = (preds[:, start - 1:] == tokens[:, start:].cpu()).float().mean(1)
    return sel.mean(1), acc


@dataclass
class ICLScore:
    """Olsson et al.'s in-context-learning score: ``loss[late] - loss[early]`` per text (negative = ICL)."""

    early: int
    late: int
    per_text: torch.Tensor
    loss_early: torch.Tensor
    loss_late: torch.Tensor
    estimate: Estimate
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({"text": range(len(self.per_text)), "loss_early": self.loss_early.numpy(),
                             "loss_late": self.loss_late.numpy(), "icl_score": self.per_text.numpy(),
                             "early": self.early, "late": self.late})

    def summary(self) -> str:
        """The mean ICL score with its CI, and the two losses it is the difference of."""
        return (f"ICL score (loss at token {self.late} minus loss at token {self.early}; negative = in-context "
                f"learning) over {len(self.per_text)} texts: {self.estimate} (losses {float(self.loss_early.mean()):.3g} "
                f"-> {float(self.loss_late.mean()):.3g})")


def icl_score(model: Model, texts: Any, *, early: int = 50, late: int = 500, interventions: Any = None,
              window: int = 0, seed: int = 0) -> ICLScore:
    """``loss(token late) - loss(token early)`` per text (token indices count real tokens from 0).

    Olsson et al. (2022) use 500 and 50; pass smaller values for short contexts and say so. ``window > 0``
    averages the loss over ``[t - window, t + window]`` around each index (less noise). Texts are
    truncated to ``late + window + 1`` tokens.
    """
    if isinstance(texts, torch.Tensor):
        tokens = texts
    else:
        rows = [model.tokenize(t).real_tokens(0) for t in ([texts] if isinstance(texts, str) else texts)]
        need = late + window + 1
        short = [i for i, r in enumerate(rows) if len(r) < need]
        if short:
            raise ValueError(f"texts {short[:5]} have fewer than {need} tokens; use longer texts or a smaller late=")
        tokens = torch.tensor([r[:need] for r in rows], device=model.device)
    losses = _token_losses(model, tokens, interventions)  # losses[:, t-1] is the loss of token t

    def at(t):
        return losses[:, t - 1 - window:t + window].mean(1)
    le, ll = at(early), at(late)
    d = (ll - le).double()
    est = mean_estimate(d.numpy(), seed=seed)
    prov = model.provenance(data_hash=data_hash(tokens), seed=seed,
                            extra={"method": "icl_score", "early": early, "late": late, "window": window})
    return ICLScore(early, late, d.float(), le, ll, est, prov)


def copy_task(model: Model, n: int = 20, length: int = 24, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """Text prompts for the shared log-prob scorer: ``s + s[:1]`` -> continuation ``s[1:]`` (a repeated random string).

    Byte-level models get random ASCII letters (one token each); larger vocabularies get random words drawn from
    the tokenizer's vocabulary (ids 1000-20000, decoded), so the second copy is predictable only by copying.
    """
    rng = np.random.default_rng(seed)
    prompts, conts = [], []
    for _ in range(n):
        if model.facts.d_vocab < 1000:
            letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
            s = "".join(rng.choice(list(letters), size=length))
            prompts.append(s + s[0])
            conts.append(s[1:])
        else:
            words = []
            while len(words) < length:
                w = model.tokenizer.decode([int(rng.integers(1000, min(20000, model.facts.d_vocab)))]).strip()
                if w.isalpha():
                    words.append(w)
            prompts.append(" ".join(words) + "\n" + words[0])
            conts.append(" " + " ".join(words[1:]))
    return prompts, conts


def rounding_rule(k_percent: float, n_heads: int) -> int:
    """Heads per layer for the top-``k_percent`` selection: ``max(1, ceil(k% x n_heads))``."""
    return max(1, math.ceil(k_percent / 100.0 * n_heads - 1e-9))


def top_heads_per_layer(scores: torch.Tensor, k_percent: float) -> list[Head]:
    """The ``rounding_rule(k, n_heads)`` highest-scoring heads of every layer."""
    n = rounding_rule(k_percent, scores.shape[1])
    out = []
    for L in range(scores.shape[0]):
        for h in torch.argsort(scores[L], descending=True)[:n].tolist():
            out.append((L, int(h)))
    return out


@dataclass
class InductionProtocolResult:
    """Targeted vs matched-random head ablation on the induction task (see the module docstring).

    ``loss_*`` are per-sequence mean losses on the repeated half (``[n_seqs]``; ``loss_random``:
    ``[n_random, n_seqs]``); ``effect_targeted`` = targeted - clean, ``effect_random`` = mean over random
    sets - clean, ``targeted_minus_random`` = their paired difference, each with a bootstrap CI over sequences.
    """

    k_percent: float
    heads_per_layer: int
    rounding: str
    targeted: list[Head]
    random_sets: list[list[Head]]
    method: str
    loss_clean: torch.Tensor
    loss_targeted: torch.Tensor
    loss_random: torch.Tensor
    acc_clean: torch.Tensor
    acc_targeted: torch.Tensor
    acc_random: torch.Tensor
    effect_targeted: Estimate
    effect_random: Estimate
    targeted_minus_random: Estimate
    head_scores: HeadScores
    behaviour: dict | None = None  # shared scorer (workbench.scorers.logprob) on the copy task, per condition
    icl_clean: ICLScore | None = None
    icl_targeted: ICLScore | None = None
    icl_random: list[ICLScore] | None = None
    provenance: Provenance = field(default_factory=Provenance)

    def to_dataframe(self):
        import pandas as pd

        rows = [{"condition": "clean", "loss": float(self.loss_clean.mean()), "copy_acc": float(self.acc_clean.mean()),
                 "heads": ""},
                {"condition": "targeted", "loss": float(self.loss_targeted.mean()),
                 "copy_acc": float(self.acc_targeted.mean()), "heads": ",".join(f"{a}.{b}" for a, b in self.targeted)}]
        for i, hs in enumerate(self.random_sets):
            rows.append({"condition": f"random_{i}", "loss": float(self.loss_random[i].mean()),
                         "copy_acc": float(self.acc_random[i].mean()), "heads": ",".join(f"{a}.{b}" for a, b in hs)})
        df = pd.DataFrame(rows)
        for name in ("effect_targeted", "effect_random", "targeted_minus_random"):
            e = getattr(self, name)
            df.attrs[name] = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n}
        return df

    def summary(self) -> str:
        f = lambda e: f"{e.value:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"  # noqa: E731
        return (f"top {self.k_percent}% per layer ({self.heads_per_layer}/layer, {self.rounding}), {self.method} ablation: "
                f"loss on repeated half clean {float(self.loss_clean.mean()):.3f}; targeted +{f(self.effect_targeted)}; "
                f"random +{f(self.effect_random)}; targeted - random {f(self.targeted_minus_random)} "
                f"(n={self.effect_targeted.n} sequences, {len(self.random_sets)} random sets)")


def induction_protocol(model: Model, *, k_percent: float = 2.0, n_random: int = 10, method: str = "zero",
                       n_seqs: int = 20, half: int = 50, seed: int = 0, score_seqs: int = 10,
                       icl_texts: Any = None, icl_early: int = 50, icl_late: int = 500,
                       scores: HeadScores | None = None, scorer: bool = True, progress: bool = False
                       ) -> InductionProtocolResult:
    """Targeted (top-k% induction heads per layer) vs matched random head ablation.

    Head scores are computed on ``score_seqs`` repeated-random-token sequences (seed ``seed``); the
    evaluation uses ``n_seqs`` *different* sequences (seed ``seed + 1``). ``method``: ``zero`` or ``mean``
    (mean over the evaluation sequences' tokens) or ``resample``. ``icl_texts``: optional text for the ICL
    score under each condition.
    """
    for name, v in (("n_random", n_random), ("n_seqs", n_seqs), ("half", half), ("score_seqs", score_seqs)):
        check_count(v, name)
    N, H = model.n_layers, model.facts.n_heads
    if scores is None:
        scores = head_scores(model, kinds=("induction",), measures=("target",), n_seqs=score_seqs, half=half, seed=seed)
    ind = scores.get("induction", "target")
    targeted = top_heads_per_layer(ind, k_percent)
    n = rounding_rule(k_percent, H)
    rng = np.random.default_rng(seed)
    random_sets = []
    for _ in range(n_random):
        hs = []
        for L in range(N):
            pool = [h for h in range(H) if (L, h) not in targeted]
            if len(pool) < n:
                pool = list(range(H))
            hs += [(L, int(h)) for h in rng.choice(pool, size=n, replace=False)]
        random_sets.append(sorted(hs))
    tokens = repeated_random_tokens(model, n_seqs, half, seed=seed + 1)
    ref = tokens if method in ("mean", "resample") else None

    def ivs(hs):
        return head_ablation(model, hs, method, reference=ref, seed=seed)
    it = range(n_random)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="random ablations")
    l0, a0 = repeated_half_loss(model, tokens, half)
    lt, at = repeated_half_loss(model, tokens, half, ivs(targeted))
    lr, ar = [], []
    for i in it:
        x, y = repeated_half_loss(model, tokens, half, ivs(random_sets[i]))
        lr.append(x)
        ar.append(y)
    lr_t, ar_t = torch.stack(lr), torch.stack(ar)
    et = (lt - l0).double().cpu().numpy()
    er = (lr_t.mean(0) - l0).double().cpu().numpy()
    e_t, e_r = mean_estimate(et, seed=seed), mean_estimate(er, seed=seed)
    diff = mean_estimate(et - er, seed=seed)
    behaviour = None
    if scorer:  # the behavioural effect through the shared scorer: per-token log-prob of the repeated half
        from workbench.scorers.logprob import target_logprob

        prompts, conts = copy_task(model, n_seqs, min(half, 24), seed=seed + 2)
        kw = dict(per_token=True, seed=seed, prepend_bos=model.facts.bos_token_id is not None and model.facts.d_vocab < 1000)
        clean_s = target_logprob(model, prompts, conts, **kw)
        targ_s = target_logprob(model, prompts, conts, interventions=head_ablation(model, targeted, "zero"), **kw)
        rand_s = [target_logprob(model, prompts, conts, interventions=head_ablation(model, hs, "zero"), **kw)
                  for hs in random_sets]
        rv = np.mean([r.values for r in rand_s], axis=0)
        behaviour = {"clean": clean_s, "targeted": targ_s, "random": rand_s,
                     "targeted_minus_random_logprob": mean_estimate(np.asarray(targ_s.values) - rv, seed=seed),
                     "scorer": "workbench.scorers.logprob.target_logprob (per-token mean log-prob of the repeated half)"}
    icl0 = icl_t = None
    icl_r = None
    if icl_texts is not None:
        icl0 = icl_score(model, icl_texts, early=icl_early, late=icl_late, seed=seed)
        icl_t = icl_score(model, icl_texts, early=icl_early, late=icl_late, interventions=head_ablation(
            model, targeted, "zero"), seed=seed)
        icl_r = [icl_score(model, icl_texts, early=icl_early, late=icl_late,
                           interventions=head_ablation(model, hs, "zero"), seed=seed) for hs in random_sets]
    prov = model.provenance(data_hash=data_hash(tokens), seed=seed, sites=tuple(sorted({f"z.{L}" for L, _ in targeted})),
                            extra={"method": "induction_protocol", "k_percent": k_percent, "ablation": method,
                                   "n_random": n_random, "n_seqs": n_seqs, "half": half,
                                   "rounding": "max(1, ceil(k% x n_heads)) per layer"})
    return InductionProtocolResult(k_percent, n, "max(1, ceil(k% x n_heads)) per layer", targeted, random_sets, method,
                                   l0, lt, lr_t, a0, at, ar_t, e_t, e_r, diff, scores, behaviour, icl0, icl_t, icl_r, prov)
