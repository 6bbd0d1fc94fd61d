"""Scorers that read the model's probabilities of given continuations (teacher forcing).

- :func:`continuation_logprobs`: ``log p(continuation | prompt)`` summed over the continuation's
  tokens, with per-token values, for any batch of (prompt, continuation) pairs.
- :func:`target_logprob`: the same as a :class:`ScoreResult` (mean with a bootstrap CI).
- :func:`logit_difference`: ``logit(target) - logit(foil)`` for single-token targets at the next
  position, and the target's rank.

Tokenisation: the prompt is tokenised as :meth:`HookedModel.tokenize` would (chat template,
BOS policy), and the continuation is tokenised on its own (no special tokens) and appended.
Interventions apply to the whole forward pass (prompt and continuation positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from workbench.results import data_hash
from workbench.scorers.base import ScoreResult, register_scorer
from workbench.stats import bootstrap

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["ContinuationScores", "continuation_logprobs", "target_logprob", "logit_difference",
           "LogprobScorer"]


@dataclass(frozen=True)
class ContinuationScores:
    """Per pair: total log-prob, token count, and per-token log-probs of the continuation."""

    total: np.ndarray
    n_tokens: np.ndarray
    per_token: tuple[np.ndarray, ...]

    @property
    def mean_per_token(self) -> np.ndarray:
        return self.total / np.maximum(self.n_tokens, 1)


def _batches(n: int, size: int):
    for a in range(0, n, size):
        yield list(range(a, min(n, a + size)))


def continuation_logprobs(model: Model, prompts: Sequence[Any], continuations: Sequence[str], *,
                          interventions: Any = None, batch_size: int = 16, **tokenize_kw: Any) -> ContinuationScores:
    """``log p(continuation | prompt)`` for each pair, by teacher forcing in batches."""
    import torch

    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
    tok = model.tokenizer
    totals, counts, per = [], [], []
    for idx in _batches(len(prompts), batch_size):
        ptoks = model.tokenize([prompts[i] for i in idx], **tokenize_kw)
        rows, spans = [], []
        for j, i in enumerate(idx):
            p = ptoks.real_tokens(j)
            c = tok(continuations[i], add_special_tokens=False)["input_ids"]
            if not c:
                raise ValueError(f"continuation {i} ({continuations[i]!r}) tokenises to no tokens")
            rows.append(p + c)
            spans.append((len(p), len(p) + len(c)))
        toks = model._pad(rows, "right", None, {})
        # unembed only the positions that predict continuation tokens (not the whole vocabulary x sequence)
        final = f"resid_post.{model.n_layers - 1}"
        _, cache = model.run_with_cache(toks, [final], interventions=interventions, logits=None)
        for j, (a, b) in enumerate(spans):
            target = toks.input_ids[j, a:b]
            with torch.inference_mode():
                logp = torch.log_softmax(model.unembed(cache[final][j, a - 1:b - 1]).float(), dim=-1)
            lp = logp.gather(-1, target[:, None]).squeeze(-1).cpu().numpy()
            totals.append(float(lp.sum()))
            counts.append(b - a)
            per.append(lp)
    return ContinuationScores(np.array(totals), np.array(counts), tuple(per))


def target_logprob(model: Model, prompts: Sequence[Any], continuations: Sequence[str], *, interventions: Any = None,
                   per_token: bool = False, seed: int = 0, batch_size: int = 16, **tokenize_kw: Any) -> ScoreResult:
    """Log-prob of each continuation (or its per-token mean) as a ScoreResult with a bootstrap CI."""
    s = continuation_logprobs(model, prompts, continuations, interventions=interventions, batch_size=batch_size,
                              **tokenize_kw)
    values = s.mean_per_token if per_token else s.total
    agg = bootstrap(values, seed=seed) if len(values) >= 2 else None
    if agg is None:
        from workbench.stats import StatsError

        raise StatsError("target_logprob needs at least 2 items for a confidence interval")
    details = tuple({"continuation": c, "n_tokens": int(n)} for c, n in zip(continuations, s.n_tokens))
    return ScoreResult("logprob", values, tuple(str(p) for p in prompts), agg, details,
                       provenance=model.provenance(data_hash=data_hash([str(p) for p in prompts], list(continuations)),
                                                   seed=seed, extra={"per_token": per_token}))


def logit_difference(model: Model, prompts: Sequence[Any], targets: Sequence[str], foils: Sequence[str], *,
                     interventions: Any = None, batch_size: int = 16, **tokenize_kw: Any) -> dict[str, np.ndarray]:
    """Next-token ``logit(target) - logit(foil)``, log-probs and the target's rank (0 = top).

    Targets and foils must each be a single token (e.g. ``" Paris"``); a clear error names any
    that are not.
    """
    import torch

    tok = model.tokenizer

    def one(s: str, what: str, i: int) -> int:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{what} {i} ({s!r}) is {len(ids)} tokens {ids}; logit_difference needs single tokens")
        return ids[0]
    t_ids = [one(t, "target", i) for i, t in enumerate(targets)]
    f_ids = [one(f, "foil", i) for i, f in enumerate(foils)]
    diffs, lpt, ranks = [], [], []
    for idx in _batches(len(prompts), batch_size):
        logits = model.forward([prompts[i] for i in idx], interventions=interventions, logits="last", **tokenize_kw).float()
        logp = torch.log_softmax(logits, -1)
        for j, i in enumerate(idx):
            diffs.append(float(logits[j, t_ids[i]] - logits[j, f_ids[i]]))
            lpt.append(float(logp[j, t_ids[i]]))
            ranks.append(int((logits[j] > logits[j, t_ids[i]]).sum()))
    return {"logit_diff": np.array(diffs), "target_logprob": np.array(lpt), "target_rank": np.array(ranks)}


@register_scorer("logprob")
class LogprobScorer:
    """Registered form: ``get_scorer("logprob", model=m)(prompts, continuations)``."""

    name = "logprob"

    def __init__(self, model: Model, *, per_token: bool = False, **tokenize_kw: Any):
        self.model, self.per_token, self.tokenize_kw = model, per_token, tokenize_kw

    def __call__(self, prompts: Sequence[Any], outputs: Sequence[str], *, groups: Any = None,
                 provenance: Any = None, interventions: Any = None) -> ScoreResult:
        return target_logprob(self.model, prompts, outputs, interventions=interventions, per_token=self.per_token,
                              **self.tokenize_kw)
