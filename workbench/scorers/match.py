"""Answer matching: does a completion give the expected answer? (exact-match tasks)

Each prompt has one or more accepted answers. A completion passes when its normalised text
matches one of them under the chosen ``mode``:

- ``"first_word"`` (default): the completion's first words (as many as the answer has, each with
  surrounding punctuation removed) equal the answer's words. " Paris." and "Paris, France" pass
  for "Paris"; " The capital is Paris" does not; "New Delhi" needs " New Delhi", not " New York".
- ``"prefix"``: the completion starts with an accepted answer (answers of several words).
- ``"contains"``: an accepted answer occurs as a whole word anywhere in the completion
  (lenient; a completion listing several candidates passes).

Normalisation is :func:`workbench.scorers.refusal.normalize_text` (typographic apostrophes folded,
case-folded, whitespace collapsed). Per-item value 1.0/0.0; the aggregate is the pass rate with a
Wilson interval, or a cluster bootstrap over prompts when prompts repeat (several samples of one
prompt are not independent).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Sequence

import numpy as np

from workbench.errors import InputError
from workbench.results import Provenance
from workbench.scorers.base import ScoreResult, check_batch, fill_provenance, register_scorer, resolve_groups
from workbench.scorers.refusal import normalize_text
from workbench.stats import proportion

__all__ = ["AnswerMatchScorer", "answer_matches", "MATCH_MODES"]

MATCH_MODES = ("first_word", "prefix", "contains")
_PUNCT = "\"'`.,;:!?()[]{}<>*_-"


def _words(text: str) -> list[str]:
    return [w.strip(_PUNCT) for w in normalize_text(text).split(" ") if w.strip(_PUNCT)]


def _first_word(text: str) -> str:
    w = _words(text)
    return w[0] if w else ""


def answer_matches(output: str, answers: Sequence[str], mode: str = "first_word") -> str | None:
    """The first accepted answer that ``output`` matches under ``mode``, or None."""
    if mode not in MATCH_MODES:
        raise InputError(f"mode must be one of {MATCH_MODES}; got {mode!r}")
    norm = normalize_text(output)
    for a in answers:
        na = normalize_text(a)
        if not na:
            raise InputError(f"accepted answers must contain text; got {a!r}")
        if mode == "first_word":
            want = _words(a)
            if want and _words(output)[:len(want)] == want:
                return a
        elif mode == "prefix":
            if norm.startswith(na) and (len(norm) == len(na) or not norm[len(na)].isalnum()):
                return a
        elif re.search(rf"(?<!\w){re.escape(na)}(?!\w)", norm):
            return a
    return None


@register_scorer("answer-match")
class AnswerMatchScorer:
    """Pass rate of completions against accepted answers per prompt.

    Args:
        answers: ``{prompt: answer or [answers]}``; every scored prompt must have an entry.
        mode: ``"first_word"`` (default), ``"prefix"`` or ``"contains"`` (see the module docstring).
        confidence, seed, n_resamples: for the aggregate interval.
    """

    name = "answer-match"

    def __init__(self, answers: Mapping[str, str | Sequence[str]], *, mode: str = "first_word",
                 confidence: float = 0.95, seed: int = 0, n_resamples: int = 2000) -> None:
        if mode not in MATCH_MODES:
            raise InputError(f"mode must be one of {MATCH_MODES}; got {mode!r}")
        if not answers:
            raise InputError("answers is empty: give {prompt: accepted answer(s)}")
        self.answers = {p: ((a,) if isinstance(a, str) else tuple(a)) for p, a in answers.items()}
        for p, a in self.answers.items():
            if not a:
                raise InputError(f"prompt {p!r} has no accepted answer")
        self.mode, self.confidence, self.seed, self.n_resamples = mode, confidence, seed, n_resamples

    def __call__(self, prompts: Sequence[str] | None, outputs: Sequence[str], *,
                 groups: Sequence[Any] | None = None, provenance: Provenance | None = None) -> ScoreResult:
        if prompts is None:
            raise InputError("answer-match needs the prompts (to look up each prompt's accepted answers)")
        items, outs = check_batch(prompts, outputs)
        if not outs:
            raise InputError("the batch is empty; nothing to score.")
        missing = sorted({p for p in items if p not in self.answers}, key=str)
        if missing:
            raise InputError(f"{len(missing)} prompt(s) have no accepted answer, e.g. {missing[:2]!r}; add them to "
                             "answers=")
        hits = [answer_matches(o, self.answers[p], self.mode) for p, o in zip(items, outs)]
        values = np.array([h is not None for h in hits], dtype=float)
        g = resolve_groups(items, groups, len(outs))
        agg = proportion(values, confidence=self.confidence, groups=g, seed=self.seed, n_resamples=self.n_resamples)
        agg = dataclasses.replace(agg, statistic="pass_rate")
        details = tuple({"matched": h, "first_word": _first_word(o)} for h, o in zip(hits, outs))
        prov = fill_provenance(provenance, self.name, items, outs, mode=self.mode)
        return ScoreResult(self.name, values, items, agg, details, g, 0, prov)
