"""Self-report instruments: keyed statements grouped into traits (and facets), on a Likert scale.

An :class:`Instrument` is data: statements (:class:`InstrumentItem`: text, trait, facet, key +1/-1),
the scale's anchors from lowest to highest, and the question asked about every statement. It says
nothing about how the statement is shown to a model; that is a :class:`~workbench.instruments.formats.ResponseFormat`.

Shipped: IPIP-NEO-120 (Johnson 2014) and IPIP-NEO-300 (Goldberg et al. 2006), Big Five domains and
facets, administered with the IPIP instruction "how accurately does this describe you" on the
five-point scale Very inaccurate .. Very accurate. Reverse-keyed items score ``(lo + hi) - x``
(6 - x on 1..5).

Bring your own: :func:`load_instrument` reads a CSV, JSON or JSONL file of statements (``text``,
``trait``, ``key``; optional ``facet``, ``id``), or Anthropic persona-statement records
(``statement``, ``answer_matching_behavior`` " Yes"/" No": key +1 where "Yes" matches the trait).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from workbench.errors import WorkbenchError

__all__ = ["InstrumentItem", "Instrument", "InstrumentError", "load_ipip_neo", "load_instrument",
           "instrument_from_records", "IPIP_ANCHORS", "IPIP_QUESTION", "BIG_FIVE"]

#: The IPIP response anchors, lowest to highest.
IPIP_ANCHORS = ("Very inaccurate", "Moderately inaccurate", "Neither accurate nor inaccurate", "Moderately accurate",
                "Very accurate")
IPIP_QUESTION = "How accurately does this statement describe you?"
#: Big Five domain codes -> names (IPIP-NEO spelling).
BIG_FIVE = {"N": "Neuroticism", "E": "Extraversion", "O": "Openness", "A": "Agreeableness", "C": "Conscientiousness"}


class InstrumentError(WorkbenchError, ValueError):
    """An instrument or statement file that cannot be used as given."""


@dataclass(frozen=True)
class InstrumentItem:
    """One statement. ``key`` +1: agreeing means more of ``trait``; -1: reverse-keyed."""

    id: str
    text: str
    trait: str
    key: int = 1
    facet: str | None = None
    meta: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.key not in (1, -1):
            raise InstrumentError(f"item {self.id!r}: key must be +1 or -1 (reverse-keyed); got {self.key!r}")
        if not str(self.text).strip():
            raise InstrumentError(f"item {self.id!r} has an empty text")
        if not str(self.trait).strip():
            raise InstrumentError(f"item {self.id!r} names no trait")


@dataclass(frozen=True)
class Instrument:
    """Keyed statements on a Likert scale.

    Attributes:
        name: e.g. ``"ipip-neo-120"``.
        items: the statements, in administration order.
        anchors: the scale's labels from lowest (value 1) to highest (value K).
        question: asked about every statement (``"How accurately does this statement describe you?"``).
    """

    name: str
    items: tuple[InstrumentItem, ...]
    anchors: tuple[str, ...] = IPIP_ANCHORS
    question: str = IPIP_QUESTION
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "anchors", tuple(self.anchors))
        if not self.items:
            raise InstrumentError(f"instrument {self.name!r} has no items")
        if len(self.anchors) < 2:
            raise InstrumentError(f"instrument {self.name!r} needs at least 2 scale anchors; got {self.anchors!r}")
        ids = [it.id for it in self.items]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise InstrumentError(f"instrument {self.name!r} has duplicate item ids {dup}")

    @property
    def k(self) -> int:
        return len(self.anchors)

    @property
    def traits(self) -> list[str]:
        """Traits in order of first appearance."""
        return list(dict.fromkeys(it.trait for it in self.items))

    def __len__(self) -> int:
        return len(self.items)

    def keyed(self, value: Any, key: Any) -> Any:
        """Trait-keyed score of a raw response value (``(1 + K) - x`` for reverse-keyed items)."""
        import numpy as np

        v = np.asarray(value, dtype=float)
        return np.where(np.asarray(key) < 0, (1 + self.k) - v, v)

    def subset(self, traits: Sequence[str] | None = None, n_per_trait: int | None = None, *,
               seed: int = 0) -> "Instrument":
        """Only ``traits`` (names, or Big Five codes for IPIP), and at most ``n_per_trait`` items each.

        The subsample is reproducible from ``seed`` and balanced: within each trait it alternates
        between + and - keyed items and spreads over facets, so neither an acquiescence bias nor
        one facet can pass for the trait.
        """
        items = list(self.items)
        if traits is not None:
            want = [BIG_FIVE.get(t, t) for t in traits]
            unknown = [t for t in want if t not in self.traits]
            if unknown:
                raise InstrumentError(f"{self.name} has no trait(s) {unknown}; traits: {self.traits}")
            items = [it for it in items if it.trait in want]
        if n_per_trait is not None:
            if n_per_trait < 1:
                raise InstrumentError(f"n_per_trait must be >= 1; got {n_per_trait}")
            rng = random.Random(seed)
            keep: set[str] = set()
            for t in dict.fromkeys(it.trait for it in items):
                pools: dict[tuple, list[InstrumentItem]] = {}
                for it in items:
                    if it.trait == t:
                        pools.setdefault((it.key, it.facet), []).append(it)
                for p in pools.values():
                    rng.shuffle(p)
                # round robin over (key, facet) pools, + and - keys alternating
                order = sorted(pools, key=lambda kf: (str(kf[1]), -kf[0]))
                plus = [kf for kf in order if kf[0] > 0]
                minus = [kf for kf in order if kf[0] < 0]
                minus = minus[len(minus) // 2:] + minus[:len(minus) // 2]  # + and - picks from different facets
                seq = [x for pair in zip(plus, minus) for x in pair] + plus[len(minus):] + minus[len(plus):]
                chosen: list[InstrumentItem] = []
                while len(chosen) < n_per_trait and any(pools[kf] for kf in seq):
                    for kf in seq:
                        if pools[kf] and len(chosen) < n_per_trait:
                            chosen.append(pools[kf].pop())
                keep.update(it.id for it in chosen)
            items = [it for it in items if it.id in keep]
        return replace(self, name=self.name if traits is None and n_per_trait is None else f"{self.name}[subset]",
                       items=tuple(items), meta={**self.meta, "subset": {"traits": list(traits) if traits else None,
                                                                        "n_per_trait": n_per_trait, "seed": seed}})

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"id": it.id, "text": it.text, "trait": it.trait, "facet": it.facet, "key": it.key}
                             for it in self.items])

    def to_records(self) -> list[dict]:
        return [{"id": it.id, "text": it.text, "trait": it.trait, "facet": it.facet, "key": it.key}
                for it in self.items]


def load_ipip_neo(n_items: int = 120, *, wording: str = "first_person") -> Instrument:
    """IPIP-NEO-120 or -300 (shipped; see ``workbench/datasets/ipip_neo/PROVENANCE.md``).

    ``wording="first_person"``: the IPIP text ("Worry about things."); ``"second_person"`` (120 only):
    the MPI rewording for addressing a model ("Worry about things" as an instruction-like phrase, Jiang
    et al. 2023). Traits are the Big Five domain names; facets are e.g. ``"A1 Trust"``.
    """
    from workbench import datasets

    if wording not in ("first_person", "second_person"):
        raise InstrumentError(f"wording must be 'first_person' or 'second_person'; got {wording!r}")
    if wording == "second_person" and n_items != 120:
        raise InstrumentError("the second-person (MPI) wording exists for the 120-item version only")
    rows = datasets.ipip_neo(n_items)
    text = "text" if wording == "first_person" else "text_second_person_mpi"
    items = tuple(InstrumentItem(f"ipip{n_items}-{r['item']}", r[text], r["domain_name"], int(r["key"]),
                                 f"{r['facet_code']} {r['facet_name']}", {"item": r["item"], "domain": r["domain"]})
                  for r in rows)
    return Instrument(f"ipip-neo-{n_items}", items, IPIP_ANCHORS, IPIP_QUESTION,
                      {"source": "IPIP (public domain); Johnson (2014) IPIP-NEO-120 / Goldberg et al. (2006) IPIP-NEO-300",
                       "wording": wording})


def _key_of(v: Any, where: str) -> int:
    s = str(v).strip().lower()
    if s in ("1", "+1", "+", "plus", "1.0", "true", "yes"):
        return 1
    if s in ("-1", "-", "minus", "-1.0", "false", "no", "reverse", "r"):
        return -1
    raise InstrumentError(f"{where}: key must be +1/-1 (or '+'/'-', 'plus'/'minus'); got {v!r}")


def instrument_from_records(records: Iterable[Mapping[str, Any]], *, name: str = "custom", trait: str | None = None,
                            anchors: Sequence[str] = IPIP_ANCHORS, question: str = IPIP_QUESTION,
                            source: str = "records") -> Instrument:
    """An instrument from dicts. Each needs ``text`` (or ``statement``) and a key: ``key``/``keyed`` (+1/-1) or,
    for Anthropic persona records, ``answer_matching_behavior`` (" Yes" -> +1, " No" -> -1). ``trait`` comes from
    the record or from the ``trait=`` argument."""
    items = []
    for i, r in enumerate(records):
        where = f"{source}: record {i}"
        text = r.get("text", r.get("statement"))
        if text is None:
            raise InstrumentError(f"{where} has no 'text' (or 'statement'); keys present: {sorted(r)}")
        if "key" in r:
            key = _key_of(r["key"], where)
        elif "keyed" in r:
            key = _key_of(r["keyed"], where)
        elif "answer_matching_behavior" in r:
            a = str(r["answer_matching_behavior"]).strip().lower()
            if a not in ("yes", "no"):
                raise InstrumentError(f"{where}: answer_matching_behavior must be Yes or No to key a statement; got {a!r}")
            key = 1 if a == "yes" else -1
        else:
            raise InstrumentError(f"{where} has no key: give 'key' (+1/-1) or 'answer_matching_behavior' (Yes/No)")
        t = r.get("trait", trait)
        if t is None:
            raise InstrumentError(f"{where} names no trait; add a 'trait' column or pass trait=...")
        items.append(InstrumentItem(str(r.get("id", f"{name}-{i + 1}")), str(text), str(t), key,
                                    None if r.get("facet") in (None, "") else str(r["facet"])))
    if not items:
        raise InstrumentError(f"{source}: no statements")
    return Instrument(name, tuple(items), tuple(anchors), question, {"source": source})


def load_instrument(path: str | Path, *, name: str | None = None, trait: str | None = None,
                    anchors: Sequence[str] = IPIP_ANCHORS, question: str = IPIP_QUESTION) -> Instrument:
    """A user's statement file: ``.csv`` (header row), ``.json`` (a list of objects) or ``.jsonl``; see
    :func:`instrument_from_records` for the columns."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"statement file not found: {p}")
    if p.suffix == ".csv":
        with open(p, newline="") as f:
            records = list(csv.DictReader(f))
    elif p.suffix in (".json", ".jsonl"):
        text = p.read_text()
        try:
            records = [json.loads(x) for x in text.splitlines() if x.strip()] if p.suffix == ".jsonl" else json.loads(text)
        except json.JSONDecodeError as e:
            raise InstrumentError(f"{p} is not valid JSON: {e}") from e
        if not isinstance(records, list):
            raise InstrumentError(f"{p} holds a JSON {type(records).__name__}; expected a list of statement objects")
    else:
        raise InstrumentError(f"{p}: statement files are .csv, .json or .jsonl; got {p.suffix!r}")
    return instrument_from_records(records, name=name or p.stem, trait=trait, anchors=anchors, question=question,
                                   source=str(p))
