"""Small fixed prompt sets for the circuits studies, and the filters that fit them to a model's tokenizer.

The sets are short and listed here so numbers are reproducible; pass your own to study something
else. Logit metrics read one answer token, so an answer that is several tokens for a model's
tokenizer cannot be measured that way: :func:`single_token_facts` and :func:`usable_pairs` drop such
items and say which (a byte-level tokenizer keeps none of them; a study then reports that instead of
a number).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .metrics import LogitDiff, single_token_ids

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["FACTS", "FACTUAL_PAIRS", "IOI_PAIRS", "single_token_facts", "usable_pairs", "factual_recall_batch",
           "ioi_batch"]

#: "The capital of X is" -> " Y" and other one-fact prompts whose answer is one token in SmolLM2's (and GPT-2's)
#: vocabulary (the logit-lens study's set)
FACTS: list[tuple[str, str]] = [
    ("The capital of France is", " Paris"), ("The capital of Italy is", " Rome"),
    ("The capital of Germany is", " Berlin"), ("The capital of Spain is", " Madrid"),
    ("The capital of Japan is", " Tokyo"), ("The capital of Russia is", " Moscow"),
    ("The capital of Greece is", " Athens"), ("The capital of Egypt is", " Cairo"),
    ("The capital of England is", " London"), ("The capital of China is", " Beijing"),
    ("The capital of Ireland is", " Dublin"), ("The capital of Austria is", " Vienna"),
    ("The capital of Poland is", " Warsaw"), ("The capital of Portugal is", " Lisbon"),
    ("The capital of Canada is", " Ottawa"), ("The capital of Sweden is", " Stockholm"),
    ("The Eiffel Tower is in the city of", " Paris"), ("The Colosseum is in the city of", " Rome"),
    ("Water is made of hydrogen and", " oxygen"), ("The opposite of hot is", " cold"),
    ("The largest planet in the solar system is", " Jupiter"), ("The sun rises in the", " east"),
    ("Monday, Tuesday,", " Wednesday"), ("One, two, three,", " four"),
]

#: (subject, answer): clean "The capital of X is" -> answer; the corrupt prompt uses the next row's subject
FACTUAL_PAIRS = [(" France", " Paris"), (" Italy", " Rome"), (" Germany", " Berlin"), (" Spain", " Madrid"),
                 (" Japan", " Tokyo"), (" Russia", " Moscow"), (" Greece", " Athens"), (" Egypt", " Cairo")]
#: (indirect object, subject): "When A and B went to the store, B gave a drink to" -> A; corrupt: "..., A gave ..." -> B
IOI_PAIRS = [(" Mary", " John"), (" Alice", " Bob"), (" Sarah", " Tom"), (" Emma", " James"), (" Anna", " David"),
             (" Paul", " Michael")]


def _n_tokens(model: Model, text: str) -> int:
    return len(model.tokenizer.encode(text, add_special_tokens=False))


def single_token_facts(model: Model, facts: Sequence[tuple[str, str]] = FACTS
                       ) -> tuple[list[tuple[str, str]], list[str]]:
    """The (prompt, answer) pairs whose answer is one token for ``model``, and a note naming those dropped."""
    keep, dropped = [], []
    for p, t in facts:
        (keep if _n_tokens(model, t) == 1 else dropped).append((p, t))
    notes = [f"dropped {len(dropped)} of {len(facts)} facts whose answer is not one token for {model.name}: "
             f"{[t for _, t in dropped]}"] if dropped else []
    return keep, notes


def usable_pairs(model: Model, pairs: Sequence[tuple[str, str]] = FACTUAL_PAIRS
                 ) -> tuple[list[tuple[str, str]], list[str]]:
    """The (subject, answer) rows :func:`factual_recall_batch` can use on ``model``: answer and subject one token
    each (so every clean and corrupt prompt has the same length), and a note naming those dropped."""
    keep, dropped = [], []
    for s, a in pairs:
        (keep if _n_tokens(model, a) == 1 and _n_tokens(model, s) == 1 else dropped).append((s, a))
    notes = [f"dropped {len(dropped)} of {len(pairs)} pairs whose subject or answer is not one token for "
             f"{model.name}: {[s for s, _ in dropped]}"] if dropped else []
    return keep, notes


def factual_recall_batch(model: Model, pairs: Sequence[tuple[str, str]] = FACTUAL_PAIRS):
    """Clean/corrupt prompts and a per-prompt logit-difference metric (correct capital minus the corrupt one's)."""
    clean = [f"The capital of{s} is" for s, _ in pairs]
    corrupt = [f"The capital of{pairs[(i + 1) % len(pairs)][0]} is" for i in range(len(pairs))]
    correct = single_token_ids(model, [a for _, a in pairs])
    wrong = single_token_ids(model, [pairs[(i + 1) % len(pairs)][1] for i in range(len(pairs))])
    return clean, corrupt, LogitDiff(correct, wrong)


def ioi_batch(model: Model, pairs: Sequence[tuple[str, str]] = IOI_PAIRS):
    """IOI prompts (Wang et al. 2022) with the repeated name swapped in the corrupt prompt (ABB -> ABA)."""
    t = "When{a} and{b} went to the store,{s} gave a drink to"
    clean = [t.format(a=a, b=b, s=b) for a, b in pairs]
    corrupt = [t.format(a=a, b=b, s=a) for a, b in pairs]
    return clean, corrupt, LogitDiff(single_token_ids(model, [a for a, _ in pairs]),
                                     single_token_ids(model, [b for _, b in pairs]))
