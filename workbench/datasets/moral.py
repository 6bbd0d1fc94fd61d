"""Loaders for the shipped social-bias and moral-judgement data: BBQ, CrowS-Pairs, ETHICS commonsense.

- :func:`bbq_items`: BBQ (Parrish et al. 2022, CC-BY-4.0) items as :class:`BBQItem`, with the index of the
  answer naming the stereotyped group recovered per item (upstream keeps it as ``target_loc`` in a
  metadata file that is not shipped): the answer whose group label or surface form is one of the item's
  ``stereotyped_groups`` (case-insensitive). Exactly one answer matches in every shipped item (tested).
- :func:`crows_pairs`: CrowS-Pairs (Nangia et al. 2020, **CC-BY-SA-4.0**, a separately licensed file;
  noisy by its authors' account) minimal pairs.
- :func:`ethics_commonsense`: the 2109 short ETHICS commonsense scenarios (Hendrycks et al. 2021, MIT);
  label 1 = clearly morally wrong, 0 = not.

Content warning: BBQ and CrowS-Pairs state stereotypes on purpose.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any, Sequence

from workbench.errors import InputError

__all__ = ["BBQItem", "BBQ_CATEGORIES", "bbq_items", "crows_pairs", "ethics_commonsense", "CROWS_BIAS_TYPES"]

BBQ_CATEGORIES = ("Disability_status", "Nationality", "Religion", "Sexual_orientation")
CROWS_BIAS_TYPES = ("age", "disability", "gender", "nationality", "physical-appearance", "race-color", "religion",
                    "sexual-orientation", "socioeconomic")


@dataclass(frozen=True)
class BBQItem:
    """One BBQ item.

    Attributes:
        answers: the three answers (``ans0..ans2``); ``label`` indexes the correct one.
        groups, surfaces: per answer, BBQ's group label (``"unknown"`` for the unknown answer) and the
            surface form of the group in the text (``answer_info``).
        target: index of the answer naming a stereotyped group; ``unknown``: index of the unknown answer.
        condition: ``"ambig"`` (the context does not say; correct = unknown) or ``"disambig"``.
        polarity: ``"neg"`` (the question asks for the stereotype, e.g. "who planted the bomb?") or ``"nonneg"``.
    """

    example_id: int
    category: str
    question_index: str
    polarity: str
    condition: str
    context: str
    question: str
    answers: tuple[str, str, str]
    label: int
    groups: tuple[str, str, str]
    surfaces: tuple[str, str, str]
    stereotyped_groups: tuple[str, ...]
    target: int
    unknown: int
    subcategory: str = ""

    @property
    def other(self) -> int:
        """Index of the answer naming the non-stereotyped group."""
        return 3 - self.target - self.unknown

    @property
    def biased(self) -> int:
        """The bias-consistent answer (Parrish et al. 2022): the stereotyped group for a negative question,
        the other group for a non-negative one."""
        return self.target if self.polarity == "neg" else self.other

    @property
    def counter_biased(self) -> int:
        """The group answer that goes against the stereotype."""
        return self.other if self.polarity == "neg" else self.target

    @property
    def unsupported_bias(self) -> bool:
        """True where the context does not support the bias-consistent answer: every ambiguous item, and a
        disambiguated item whose correct answer is the counter-stereotypical one."""
        return self.condition == "ambig" or self.label != self.biased

    @property
    def uid(self) -> str:
        return f"{self.category}:{self.example_id}"


def _bbq_item(rec: dict, where: str) -> BBQItem:
    info = rec["answer_info"]
    surfaces = tuple(info[f"ans{i}"][0] for i in range(3))
    groups = tuple(info[f"ans{i}"][1] for i in range(3))
    st = tuple(rec["additional_metadata"]["stereotyped_groups"])
    low = {s.lower() for s in st}
    unknown = [i for i in range(3) if groups[i] == "unknown"]
    hits = [i for i in range(3) if groups[i] != "unknown" and (groups[i].lower() in low or surfaces[i].lower() in low)]
    if len(unknown) != 1 or len(hits) != 1:
        raise InputError(f"{where}: cannot recover the stereotyped answer (unknown answers {unknown}, matches {hits} "
                         f"of {st} in {groups})")
    return BBQItem(int(rec["example_id"]), rec["category"], str(rec["question_index"]), rec["question_polarity"],
                   rec["context_condition"], rec["context"], rec["question"], (rec["ans0"], rec["ans1"], rec["ans2"]),
                   int(rec["label"]), groups, surfaces, st, hits[0], unknown[0],
                   str(rec["additional_metadata"].get("subcategory", "")))


def bbq_items(categories: str | Sequence[str] | None = None, *, condition: str | None = None,
              polarity: str | None = None) -> list[BBQItem]:
    """BBQ items of the shipped ``categories`` (default all four), optionally one context condition
    (``"ambig"``/``"disambig"``) and question polarity (``"neg"``/``"nonneg"``), in file order."""
    from . import path

    cats = list(BBQ_CATEGORIES) if categories is None else ([categories] if isinstance(categories, str) else list(categories))
    bad = [c for c in cats if c not in BBQ_CATEGORIES]
    if bad:
        raise InputError(f"unknown BBQ categories {bad}; shipped: {', '.join(BBQ_CATEGORIES)}")
    if condition not in (None, "ambig", "disambig"):
        raise InputError(f"condition must be 'ambig', 'disambig' or None; got {condition!r}")
    if polarity not in (None, "neg", "nonneg"):
        raise InputError(f"polarity must be 'neg', 'nonneg' or None; got {polarity!r}")
    out = []
    for c in cats:
        with open(path(f"bbq/original/data/{c}.jsonl")) as f:
            for n, line in enumerate(f):
                if not line.strip():
                    continue
                rec = json.loads(line)
                if condition and rec["context_condition"] != condition or polarity and rec["question_polarity"] != polarity:
                    continue
                out.append(_bbq_item(rec, f"bbq/{c}.jsonl line {n + 1}"))
    return out


def crows_pairs(bias_types: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """CrowS-Pairs minimal pairs: ``{"index", "sent_more", "sent_less", "stereo_antistereo", "bias_type"}``.

    ``sent_more`` is the more stereotyping sentence of the pair (for ``"antistereo"`` rows it violates a
    stereotype about a disadvantaged group). CC-BY-SA-4.0, see ``crows_pairs/LICENSE_CC-BY-SA-4.0.md``."""
    from . import path

    types = None if bias_types is None else ({bias_types} if isinstance(bias_types, str) else set(bias_types))
    if types is not None and not types <= set(CROWS_BIAS_TYPES):
        raise InputError(f"unknown CrowS-Pairs bias types {sorted(types - set(CROWS_BIAS_TYPES))}; "
                         f"choose from {', '.join(CROWS_BIAS_TYPES)}")
    out = []
    with open(path("crows_pairs/original/data/crows_pairs_anonymized.csv"), newline="") as f:
        for r in csv.DictReader(f):
            if types is None or r["bias_type"] in types:
                out.append({"index": int(r[""]), "sent_more": r["sent_more"], "sent_less": r["sent_less"],
                            "stereo_antistereo": r["stereo_antistereo"], "bias_type": r["bias_type"]})
    return out


def ethics_commonsense() -> list[dict[str, Any]]:
    """The short ETHICS commonsense scenarios: ``{"row", "label", "input"}`` (label 1 = clearly wrong)."""
    from . import path

    with open(path("ethics_commonsense/derived/cm_test_short.csv"), newline="") as f:
        return [{"row": int(r["row"]), "label": int(r["label"]), "input": r["input"]} for r in csv.DictReader(f)]
