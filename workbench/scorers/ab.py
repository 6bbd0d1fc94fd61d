"""A/B choice from next-token logits, in the CAA format (Rimsky et al. 2024).

Each item is a question with two answers, ``answer_matching_behavior`` and
``answer_not_matching_behavior`` (``"(A)"``/``"(B)"``, ``" Yes"``/``" No"``, ``"A"``/``"B"``...).
For each item we tokenise ``prompt + answer`` for both answers; their longest common token
prefix is the context (it contains the prompt and any shared answer prefix such as ``"("``), and
the first tokens where they differ are the two choices. Then

    p(matching) = exp(l_m) / (exp(l_m) + exp(l_n))

with ``l_m``, ``l_n`` the next-token logits of the two choice tokens after the context. This is
independent of which letter is the matching one, of whether answers are written ``"(A)"`` or
``"A"``, and of tokenizers that merge the answer with the end of the prompt. It equals the
normalised probabilities of the two answers' distinguishing tokens computed by teacher forcing
(tests check this on SmolLM2 against :func:`workbench.scorers.logprob.continuation_logprobs`).

Reported per item: p(matching), the logit difference, whether the matching answer wins, and the
probability mass on the two choices (low mass means the model is not answering in the format).
The aggregate is mean p(matching) with a bootstrap CI over items; :func:`ab_accuracy` gives the
accuracy with a Wilson interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from workbench.errors import WorkbenchError
from workbench.results import data_hash
from workbench.scorers.base import ScoreResult, register_scorer
from workbench.stats import Estimate, bootstrap, proportion

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["ABItem", "load_ab_items", "ab_scores", "ab_accuracy", "ABScorer", "ABFormatError", "context_and_choices"]


class ABFormatError(WorkbenchError, ValueError):
    pass


@dataclass(frozen=True)
class ABItem:
    question: str
    matching: str
    not_matching: str
    meta: Mapping[str, Any] | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], i: int = 0, source: str = "records") -> "ABItem":
        missing = [k for k in ("question", "answer_matching_behavior", "answer_not_matching_behavior") if k not in rec]
        if missing:
            raise ABFormatError(
                f"{source}: record {i} lacks {missing}; A/B records need 'question', 'answer_matching_behavior' and "
                f"'answer_not_matching_behavior' (CAA format). Keys present: {sorted(rec)}"
            )
        m, n = rec["answer_matching_behavior"], rec["answer_not_matching_behavior"]
        if isinstance(m, list) or isinstance(n, list):
            raise ABFormatError(f"{source}: record {i} has a list of answers; give one matching and one not-matching answer")
        if str(m).strip() == str(n).strip():
            raise ABFormatError(f"{source}: record {i} has the same matching and not-matching answer {m!r}")
        meta = {k: v for k, v in rec.items() if k not in ("question", "answer_matching_behavior", "answer_not_matching_behavior")}
        return cls(str(rec["question"]), str(m), str(n), meta or None)


def load_ab_items(source: str | Path | Iterable[Mapping[str, Any]]) -> list[ABItem]:
    """CAA-format items from a JSON list file, a JSONL file, or an iterable of dicts."""
    name = "records"
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise FileNotFoundError(f"A/B dataset not found: {path}")
        text = path.read_text()
        try:
            records = json.loads(text) if path.suffix != ".jsonl" else [json.loads(x) for x in text.splitlines() if x.strip()]
        except json.JSONDecodeError as e:
            raise ABFormatError(f"{path} is not valid JSON{' lines' if path.suffix == '.jsonl' else ''}: {e}") from e
        if isinstance(records, dict):
            raise ABFormatError(f"{path} holds a JSON object; expected a list of A/B records")
    else:
        records = list(source)
    items = [ABItem.from_record(r, i, name) for i, r in enumerate(records)]
    if not items:
        raise ABFormatError(f"{name}: no A/B records")
    return items


def context_and_choices(model: Model, prompt_text: str, a: str, b: str) -> tuple[list[int], int, int]:
    """The token ids both answers share after ``prompt_text`` (the context the model reads) and each answer's first
    differing token (the two choices whose logits an A/B score compares); :class:`ABFormatError` when one answer's
    tokens are a prefix of the other's."""
    tok = model.tokenizer
    ia = tok(prompt_text + a, add_special_tokens=False)["input_ids"]
    ib = tok(prompt_text + b, add_special_tokens=False)["input_ids"]
    k = 0
    while k < min(len(ia), len(ib)) and ia[k] == ib[k]:
        k += 1
    if k == len(ia) or k == len(ib):
        raise ABFormatError(f"answers {a!r} and {b!r} are not distinguishable by their first differing token "
                            "(one is a prefix of the other)")
    return ia[:k], ia[k], ib[k]


def ab_scores(model: Model, items: Sequence[ABItem | Mapping[str, Any]], *, interventions: Any = None,
              chat: bool = True, system: str | None = None, prompt_template: str = "{question}",
              strip_answers: bool = False, batch_size: int = 16, seed: int = 0,
              prepend_bos: bool | None = None) -> ScoreResult:
    """Score A/B items: p(matching) per item and its mean with a bootstrap CI.

    Args:
        items: :class:`ABItem` or CAA dicts.
        chat: wrap the question in the model's chat template (the answer follows the assistant turn).
        system: a system message (chat only), e.g. a persona prompt.
        prompt_template: format of the user text, ``{question}`` is replaced.
        strip_answers: strip whitespace around the answers (``" Yes"`` -> ``"Yes"``), natural after a
            chat template's newline.
        interventions: active during the scoring forward passes (e.g. a steering vector).
    """
    import torch

    from workbench.interventions import as_interventions

    items = [it if isinstance(it, ABItem) else ABItem.from_record(it, i) for i, it in enumerate(items)]
    if len(items) < 2:
        raise ValueError("ab_scores needs at least 2 items (for a confidence interval)")
    contexts, choices = [], []
    for it in items:
        user = prompt_template.format(question=it.question)
        text = model.format_chat(user, system=system) if chat else user
        a, b = (it.matching.strip(), it.not_matching.strip()) if strip_answers else (it.matching, it.not_matching)
        ctx, ca, cb = context_and_choices(model, text, a, b)
        if not chat:
            bos = model.prepend_bos if prepend_bos is None else prepend_bos
            if bos and model.facts.bos_token_id is not None:
                ctx = [model.facts.bos_token_id] + ctx
        contexts.append(ctx)
        choices.append((ca, cb))
    p_match, ldiff, mass = np.zeros(len(items)), np.zeros(len(items)), np.zeros(len(items))
    for a in range(0, len(items), batch_size):
        idx = list(range(a, min(len(items), a + batch_size)))
        toks = model._pad([contexts[i] for i in idx], "left", None, {})
        logits = model.forward(toks, interventions=interventions, logits="last").float()
        probs = torch.softmax(logits, -1)
        for j, i in enumerate(idx):
            cm, cn = choices[i]
            lm, ln = logits[j, cm], logits[j, cn]
            p_match[i] = float(torch.sigmoid(lm - ln))
            ldiff[i] = float(lm - ln)
            mass[i] = float(probs[j, cm] + probs[j, cn])
    tok = model.tokenizer
    details = tuple({"logit_diff": float(d), "matching_wins": bool(p > 0.5), "choice_mass": float(ms),
                     "matching_token": tok.decode([c[0]]), "not_matching_token": tok.decode([c[1]])}
                    for d, p, ms, c in zip(ldiff, p_match, mass, choices))
    agg = bootstrap(p_match, seed=seed)
    prov = model.provenance(data_hash=data_hash([(it.question, it.matching, it.not_matching) for it in items]),
                            seed=seed, extra={"chat": chat, "system": system, "prompt_template": prompt_template,
                                              "strip_answers": strip_answers,
                                              "interventions": len(as_interventions(interventions))})
    return ScoreResult("ab", p_match, tuple(it.question for it in items), agg, details, provenance=prov)


def ab_accuracy(result: ScoreResult, confidence: float = 0.95) -> Estimate:
    """Share of items where the matching answer wins (p > 0.5), with a Wilson interval."""
    wins = np.array([d["matching_wins"] for d in result.details], dtype=float)
    return proportion(wins, confidence=confidence)


@register_scorer("ab")
class ABScorer:
    """Registered form: ``get_scorer("ab", model=m, chat=True)(items, interventions=...)``."""

    name = "ab"

    def __init__(self, model: Model, **options: Any):
        self.model, self.options = model, options

    def __call__(self, items: Sequence[Any], *, interventions: Any = None, **kw: Any) -> ScoreResult:
        return ab_scores(self.model, items, interventions=interventions, **{**self.options, **kw})
