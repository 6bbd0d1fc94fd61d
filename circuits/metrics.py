"""Patching metrics: functions of the logits at the position the metric reads.

A metric is called on the logits at its read position only (``[n, vocab]``, one row per patched
run) together with the index of the prompt each row belongs to (``rows``, ``[n]``), and returns one
value per row. Reading logits at one position is what lets a sweep skip the unembedding everywhere
else (the unembedding of SmolLM2 costs about a quarter of a token's forward pass).

Built-ins follow Zhang & Nanda (2023) and Heimersheim & Nanda (2024), "How to use and interpret
activation patching": prefer the logit difference between a correct and a wrong answer (linear in
the residual stream, not saturated like a probability), report it normalised as
``(patched - corrupt) / (clean - corrupt)``; probabilities and KL divergence are available for
comparison. Any callable ``f(logits, rows) -> [n]`` works as a metric too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["PatchMetric", "LogitDiff", "TargetProb", "TargetLogProb", "KLFromClean", "as_metric",
           "single_token_ids", "MetricError"]


class MetricError(WorkbenchError, ValueError):
    pass


def single_token_ids(model: Model, answers: str | int | Sequence[str | int]) -> torch.Tensor:
    """Token ids of single-token answers (``" Paris"`` -> its id); raise if an answer is several tokens."""
    items = [answers] if isinstance(answers, (str, int)) else list(answers)
    out = []
    for a in items:
        if isinstance(a, int) or (isinstance(a, torch.Tensor) and a.ndim == 0):
            out.append(int(a))
            continue
        ids = model.tokenizer(a, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = [model.tokenizer.decode([i]) for i in ids]
            raise MetricError(
                f"answer {a!r} is {len(ids)} tokens {pieces} for {model.name}; a logit metric needs a single "
                "token. Use the first token (e.g. with a leading space, ' Paris'), or pass token ids."
            )
        out.append(ids[0])
    return torch.tensor(out, dtype=torch.long)


class PatchMetric:
    """Base class: ``metric(logits[n, vocab], rows[n]) -> values[n]``.

    ``prepare(clean_logits, corrupt_logits)`` is called once per sweep with the unpatched runs'
    logits at the read position (``[batch, vocab]``), for metrics that need a reference.
    """

    name = "metric"
    higher_is_clean = True

    def prepare(self, clean: torch.Tensor, corrupt: torch.Tensor) -> None:
        pass

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name}


def _ids(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.long)
    return t.reshape(-1)


@dataclass
class LogitDiff(PatchMetric):
    """``logit[correct] - logit[wrong]`` per prompt (one id, or one per prompt)."""

    correct: Any
    wrong: Any
    name: str = "logit_diff"

    def __post_init__(self) -> None:
        self.correct, self.wrong = _ids(self.correct), _ids(self.wrong)
        if len(self.correct) != len(self.wrong):
            raise MetricError(f"LogitDiff: {len(self.correct)} correct ids but {len(self.wrong)} wrong ids")

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        c = self.correct.to(logits.device)
        w = self.wrong.to(logits.device)
        if len(c) > 1:
            c, w = c[rows], w[rows]
        else:
            c, w = c.expand(len(rows)), w.expand(len(rows))
        ar = torch.arange(len(rows), device=logits.device)
        return (logits[ar, c] - logits[ar, w]).float()

    def describe(self) -> dict:
        return {"name": self.name, "correct": self.correct.tolist(), "wrong": self.wrong.tolist()}


@dataclass
class TargetProb(PatchMetric):
    """Softmax probability of a target token per prompt."""

    target: Any
    name: str = "prob"

    def __post_init__(self) -> None:
        self.target = _ids(self.target)

    def _t(self, logits, rows):
        t = self.target.to(logits.device)
        return t[rows] if len(t) > 1 else t.expand(len(rows))

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ar = torch.arange(len(rows), device=logits.device)
        return logits.float().softmax(-1)[ar, self._t(logits, rows)]

    def describe(self) -> dict:
        return {"name": self.name, "target": self.target.tolist()}


@dataclass
class TargetLogProb(TargetProb):
    """Log-probability of a target token per prompt."""

    name: str = "logprob"

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ar = torch.arange(len(rows), device=logits.device)
        return logits.float().log_softmax(-1)[ar, self._t(logits, rows)]


@dataclass
class KLFromClean(PatchMetric):
    """``KL(p_clean || p_patched)`` at the read position (0 = the clean distribution is restored).

    Lower is closer to clean, so ``higher_is_clean`` is False; the normalised score
    ``(patched - corrupt) / (clean - corrupt)`` is still 1 at clean and 0 at corrupt.
    """

    name: str = "kl_from_clean"
    higher_is_clean: bool = False
    _ref: torch.Tensor | None = field(default=None, repr=False)

    def prepare(self, clean: torch.Tensor, corrupt: torch.Tensor) -> None:
        self._ref = clean.float().log_softmax(-1)

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if self._ref is None:
            raise MetricError("KLFromClean needs prepare(clean_logits, corrupt_logits) first (a sweep does this)")
        ref = self._ref.to(logits.device)[rows]
        lp = logits.float().log_softmax(-1)
        return (ref.exp() * (ref - lp)).sum(-1)


class _Callable(PatchMetric):
    def __init__(self, fn: Callable, name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom")

    def __call__(self, logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out = torch.as_tensor(self.fn(logits, rows))
        if out.shape != (logits.shape[0],):
            raise MetricError(f"metric {self.name} must return one value per row ({logits.shape[0]}), got {tuple(out.shape)}")
        return out.float()


def as_metric(metric: Any) -> PatchMetric:
    """A :class:`PatchMetric` from a metric object or a callable ``f(logits, rows) -> [n]``."""
    if isinstance(metric, PatchMetric):
        return metric
    if callable(metric):
        return _Callable(metric)
    raise MetricError(
        f"metric must be a PatchMetric (LogitDiff, TargetProb, TargetLogProb, KLFromClean) or a callable "
        f"f(logits[n, vocab], rows[n]) -> [n]; got {type(metric).__name__}"
    )
