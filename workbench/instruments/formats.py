"""How a self-report item is shown to a model: response formats and option orders.

A :class:`ResponseFormat` turns (statement, question, scale anchors, order) into a prompt and the K
answer strings the K-option scorer reads (:func:`workbench.scorers.koption_scores`). The three
built-in formats say the same thing in different words and with different option labels, so a
trait score that changes between them is prompt sensitivity, not a change of question (the first
property tested by Gupta et al. 2023, "Self-Assessment Tests are Unreliable Measures of LLM
Personality"):

- ``numbered``: the statement, the question, options "1. Very inaccurate" .. "5. Very accurate";
  the answer is the number.
- ``lettered``: options "(A) ..." .. "(E) ..."; the answer is the letter.
- ``rating``: the instruction first, the options "[1] ..." , the statement last, "Rating:".

Orders (the second property, option-order symmetry): ``forward`` lists the anchors from the lowest
to the highest; ``reversed`` lists them from the highest to the lowest, **relabelled in listed order**
(so in ``reversed`` the label "1" means "Very accurate"). A model that reads the options answers
with mirrored labels; a model that prefers the first-listed label does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from workbench.errors import InputError

__all__ = ["ResponseFormat", "FORMATS", "ORDERS", "get_format", "build_item"]

ORDERS = ("forward", "reversed")


@dataclass(frozen=True)
class ResponseFormat:
    """A prompt template and option labels.

    Attributes:
        name: identifier.
        template: the user text, with ``{statement}``, ``{question}`` and ``{options}`` (and optionally
            ``{first}``/``{last}``: the first and last listed labels).
        labels: the answer labels in listed order (``"1".."5"``, ``"A".."E"``); one per scale anchor. These are
            the answers the scorer reads, written right after the assistant turn opens (and ``answer_prefix``).
        option_line: how each option is listed, with ``{label}`` and ``{anchor}``.
        answer_prefix: text the answer follows (part of the context), e.g. ``"Answer: "``; empty by default.
    """

    name: str
    template: str
    labels: tuple[str, ...]
    option_line: str = "{label}. {anchor}"
    answer_prefix: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        for f in ("{statement}", "{options}"):
            if f not in self.template:
                raise InputError(f"format {self.name!r}: the template must contain {f}")
        if len(set(self.labels)) != len(self.labels):
            raise InputError(f"format {self.name!r}: labels must be distinct; got {self.labels!r}")

    def render(self, statement: str, question: str, anchors: Sequence[str], order: str) -> tuple[str, tuple[str, ...],
                                                                                                   tuple[float, ...]]:
        """(prompt, answer strings in listed order, scale value of each listed answer)."""
        k = len(anchors)
        if len(self.labels) < k:
            raise InputError(f"format {self.name!r} has {len(self.labels)} labels for a {k}-point scale")
        if order not in ORDERS:
            raise InputError(f"order must be one of {ORDERS}; got {order!r}")
        values = list(range(1, k + 1)) if order == "forward" else list(range(k, 0, -1))
        labels = self.labels[:k]
        lines = "\n".join(self.option_line.format(label=lab, anchor=anchors[v - 1]) for lab, v in zip(labels, values))
        text = self.template.format(statement=statement, question=question, options=lines, first=labels[0],
                                    last=labels[-1])
        return text, tuple(labels), tuple(float(v) for v in values)

    def to_dict(self) -> dict:
        return {"name": self.name, "template": self.template, "labels": list(self.labels),
                "option_line": self.option_line, "answer_prefix": self.answer_prefix}


FORMATS: dict[str, ResponseFormat] = {
    "numbered": ResponseFormat(
        "numbered",
        'Here is a statement: "{statement}"\n{question}\n{options}\nAnswer with the number of one option only.',
        ("1", "2", "3", "4", "5", "6", "7", "8", "9"), "{label}. {anchor}"),
    "lettered": ResponseFormat(
        "lettered",
        'Statement: "{statement}"\n{question} Choose one of the options:\n{options}\nReply with the letter only.',
        tuple("ABCDEFGHI"), "({label}) {anchor}"),
    "rating": ResponseFormat(
        "rating",
        "Rate the statement below. {question}\n{options}\nStatement: \"{statement}\"\nGive only the number "
        "({first} to {last}).",
        ("1", "2", "3", "4", "5", "6", "7", "8", "9"), "[{label}] {anchor}"),
}


def get_format(f: str | ResponseFormat | Mapping[str, Any]) -> ResponseFormat:
    """A built-in format by name, a :class:`ResponseFormat`, or a dict of its fields (a user's own format)."""
    if isinstance(f, ResponseFormat):
        return f
    if isinstance(f, Mapping):
        d = dict(f)
        d["labels"] = tuple(d.get("labels", ()))
        return ResponseFormat(**d)
    if f not in FORMATS:
        import difflib

        close = difflib.get_close_matches(str(f), list(FORMATS), n=1)
        raise InputError(f"unknown response format {f!r}" + (f" (did you mean {close[0]!r}?)" if close else "") +
                         f"; built-in formats: {', '.join(FORMATS)}, or pass a ResponseFormat")
    return FORMATS[f]


def build_item(statement: str, question: str, anchors: Sequence[str], fmt: ResponseFormat, order: str,
               meta: Mapping[str, Any] | None = None) -> Any:
    """A :class:`workbench.scorers.KOptionItem` for one statement in one format and order."""
    from workbench.scorers.koption import KOptionItem

    text, labels, values = fmt.render(statement, question, anchors, order)
    return KOptionItem(text, labels, values, meta)
