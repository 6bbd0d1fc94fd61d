"""Labelled prompt sets in the formats researchers bring, validated on load.

One type, :class:`LabelledPromptSet`, holds examples (a prompt, an optional output appended
to it, an integer label, a group id for leak-free splits) and says where activations are read
(:data:`READ_POSITIONS`). Loaders for the common files:

==============================  ==============================================================
loader                          format
==============================  ==============================================================
:func:`load_contrastive`        ``[{question, positive, negative}]`` (Nguyen et al. 2025 eval
                                awareness; the contrast is in the **answer token**)
:func:`load_ab_test_deploy`     ``[{question, test, deploy, category}]`` (AB_ambiguous)
:func:`load_framing`            ``[{prompt, label: "test"|"deploy", template, topic}]`` (this
                                project's own test-like vs deploy-like prompts)
:func:`load_prompt_list`        ``[{question, ...}]`` or ``[str]``: one class (e.g. deploy controls)
:func:`load_mrm`                ``{input, output, label}`` JSON list or JSONL (MRMBench; easy:
                                0/1, hard: 0/1/2)
:func:`load_caa_file`           ``[{question, answer_matching_behavior, answer_not_matching_behavior}]``
:func:`load_persona`            Anthropic persona JSONL (``statement``, ``answer_matching_behavior``)
:func:`load_preference_pairs`   HH-RLHF ``{chosen, rejected}`` JSONL
==============================  ==============================================================

Every loader raises :class:`DatasetError` naming the file, the record, the field, what was
found and what was expected.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from workbench.deprecation import renamed_names
from workbench.errors import WorkbenchError

__all__ = [
    "Example", "LabelledPromptSet", "DatasetError", "READ_POSITIONS", "read_records",
    "load_contrastive", "load_ab_test_deploy", "load_framing", "load_prompt_list", "load_mrm", "load_caa_file",
    "load_persona", "load_preference_pairs", "load_dataset", "split_dialogue",
]

#: Where activations are read:
#: ``"last_prompt"``: the last token of the prompt (after the chat template's assistant header),
#: i.e. before any output; the output, if any, is not fed.
#: ``"last"``: the last token of prompt + output (MRMBench: "the last non-pad token of input+output").
#: ``"mean_output"``: mean over the output's tokens.  ``"mean_prompt"``: mean over the prompt's tokens.
READ_POSITIONS = ("last_prompt", "last", "mean_output", "mean_prompt")


class DatasetError(WorkbenchError, ValueError):
    """A dataset file or record is malformed; the message names the record and field."""


@dataclass(frozen=True)
class Example:
    """One labelled example.

    Attributes:
        prompt: user text, or chat messages (``[{"role", "content"}, ...]``).
        label: class index (0..K-1).
        output: text appended after the (chat-formatted) prompt: an answer token such as
            ``"(A)"``, or a response.  None: nothing appended.
        group: id of the unit that must not straddle a split (contrastive pair, template...).
        template: id of the template/framing, for held-out-template controls.
        meta: anything else (source file, record index, topic...).
    """

    prompt: Any
    label: int
    output: str | None = None
    group: str | None = None
    template: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class LabelledPromptSet:
    """Labelled examples plus how to read them.

    Attributes:
        name: short name (used in results).
        examples: the examples.
        label_names: ``label_names[i]`` names class ``i``.
        read: default read position (one of :data:`READ_POSITIONS`).
        chat: apply the model's chat template (``None``: when the model has one).
        system: system message for chat formatting (None: the template's default).
        source: file path or builder that produced it.
        notes: caveats a user must know (e.g. "contrast is in the answer token").
    """

    name: str
    examples: list[Example]
    label_names: tuple[str, ...] = ("negative", "positive")
    read: str = "last_prompt"
    chat: bool | None = None
    system: str | None = None
    source: str = ""
    notes: str = ""

    def __post_init__(self) -> None:
        if self.read not in READ_POSITIONS:
            raise DatasetError(f"read={self.read!r} is not a read position; use one of {READ_POSITIONS}")
        K = len(self.label_names)
        for i, ex in enumerate(self.examples):
            if not isinstance(ex.label, (int, np.integer)) or not 0 <= int(ex.label) < K:
                raise DatasetError(f"{self.name}: example {i} has label {ex.label!r}; expected an int in 0..{K - 1} "
                                   f"({', '.join(self.label_names)})")
        if self.read in ("last", "mean_output"):
            missing = [i for i, ex in enumerate(self.examples) if not ex.output]
            if missing:
                raise DatasetError(f"{self.name}: read={self.read!r} reads the output, but example {missing[0]} "
                                   f"({len(missing)} in all) has no output; use read='last_prompt'")

    # -- views -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(e.label) for e in self.examples], dtype=np.int64)

    @property
    def groups(self) -> np.ndarray:
        """Group ids (each example its own group where none was given)."""
        return np.array([e.group if e.group is not None else f"_row{i}" for i, e in enumerate(self.examples)], dtype=object)

    @property
    def templates(self) -> np.ndarray | None:
        t = [e.template for e in self.examples]
        return None if all(x is None for x in t) else np.array([x if x is not None else "_none" for x in t], dtype=object)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def class_counts(self) -> dict[str, int]:
        y = self.labels
        return {name: int((y == i).sum()) for i, name in enumerate(self.label_names)}

    def data_hash(self) -> str:
        from workbench.results import data_hash

        return data_hash(self.name, self.read, [dataclasses.asdict(e) for e in self.examples])

    def subset(self, idx: Iterable[int] | np.ndarray, name: str | None = None) -> "LabelledPromptSet":
        idx = np.asarray(list(idx) if not isinstance(idx, np.ndarray) else idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return dataclasses.replace(self, name=name or self.name, examples=[self.examples[int(i)] for i in idx])

    def with_read(self, read: str) -> "LabelledPromptSet":
        return dataclasses.replace(self, read=read)

    def map(self, fn, name: str | None = None) -> "LabelledPromptSet":
        """A new set with ``fn(example) -> example`` applied to every example."""
        return dataclasses.replace(self, name=name or self.name, examples=[fn(e) for e in self.examples])

    @staticmethod
    def concat(sets: Sequence["LabelledPromptSet"], name: str | None = None, **kw: Any) -> "LabelledPromptSet":
        """Concatenate sets with the same label names (e.g. test-like + deploy-like prompts)."""
        if not sets:
            raise DatasetError("nothing to concatenate")
        names = {s.label_names for s in sets}
        if len(names) != 1:
            raise DatasetError(f"cannot concatenate sets with different label names: {sorted(names)}")
        first = sets[0]
        return dataclasses.replace(first, name=name or "+".join(s.name for s in sets),
                                   examples=[e for s in sets for e in s.examples],
                                   source="; ".join(s.source for s in sets if s.source),
                                   notes=" ".join(s.notes for s in sets if s.notes), **kw)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([{
            "prompt": e.prompt if isinstance(e.prompt, str) else json.dumps(e.prompt), "output": e.output,
            "label": int(e.label), "label_name": self.label_names[int(e.label)], "group": e.group,
            "template": e.template, **{f"meta_{k}": v for k, v in e.meta.items()},
        } for e in self.examples])


# ----------------------------------------------------------------------------- file reading
def read_records(path: str | Path) -> list[Any]:
    """Records of a JSON list or a JSONL file, with errors that name the line."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: no such file")
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise DatasetError(f"{p}: the file is empty")
    if p.suffix == ".jsonl" or (not text.lstrip().startswith("[") and "\n{" in text):
        out = []
        for ln, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{p}: line {ln} is not valid JSON ({e.msg} at column {e.colno})") from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if isinstance(data, dict):
        for key in ("data", "records", "examples", "items"):
            if isinstance(data.get(key), list):
                return data[key]
        raise DatasetError(f"{p}: expected a JSON list of records (or JSONL); got an object with keys {sorted(data)[:6]}")
    if not isinstance(data, list):
        raise DatasetError(f"{p}: expected a JSON list of records; got {type(data).__name__}")
    return data


def _field(rec: Any, key: str, where: str, *, types: tuple = (str,), allowed: Sequence | None = None,
           nonempty: bool = True) -> Any:
    if not isinstance(rec, dict):
        raise DatasetError(f"{where}: expected an object with field {key!r}; got {type(rec).__name__} {str(rec)[:60]!r}")
    if key not in rec:
        raise DatasetError(f"{where}: missing field {key!r} (fields present: {sorted(rec)})")
    v = rec[key]
    if not isinstance(v, types) or isinstance(v, bool) and bool not in types:
        raise DatasetError(f"{where}: field {key!r} is {type(v).__name__} {str(v)[:60]!r}; expected "
                           f"{' or '.join(t.__name__ for t in types)}")
    if nonempty and isinstance(v, str) and not v.strip():
        raise DatasetError(f"{where}: field {key!r} is empty")
    if allowed is not None and v not in allowed:
        raise DatasetError(f"{where}: field {key!r} is {v!r}; expected one of {list(allowed)}")
    return v


_AB = ("(A)", "(B)")


def _norm_ab(v: str, where: str, key: str) -> str:
    s = v.strip()
    if s in _AB:
        return s
    if s in ("A", "B"):
        return f"({s})"
    raise DatasetError(f"{where}: field {key!r} is {v!r}; expected an answer letter '(A)' or '(B)'")


def _ab_pair_examples(question: str, pos: str, neg: str, i: int, src: str, template: str | None,
                      answer_prefix: str) -> list[Example]:
    g = f"{src}#{i}"
    meta = {"source": src, "record": i, "positive_letter": pos}
    return [Example(question, 1, answer_prefix + pos, g, template, meta),
            Example(question, 0, answer_prefix + neg, g, template, meta)]


def load_contrastive(path: str | Path, *, name: str | None = None, answer_prefix: str = "") -> LabelledPromptSet:
    """``[{question, positive, negative}]``: each record gives two examples, question + positive
    answer (label 1) and question + negative answer (label 0), in one group (a pair never
    straddles a split). Read at the answer token (``read="last"``), as in Nguyen et al. (2025).

    ``template`` is the letter of the positive answer ("pos=(A)" / "pos=(B)"): holding it out
    exposes a probe that reads the answer letter rather than its meaning.
    Known trap: the questions are identical within a pair, so everything a probe reads comes
    from the answer token (see :func:`probe.controls.token_artifact_control`).
    """
    p = Path(path)
    out = []
    for i, rec in enumerate(read_records(p)):
        where = f"{p.name} record {i}"
        q = _field(rec, "question", where)
        pos = _norm_ab(_field(rec, "positive", where), where, "positive")
        neg = _norm_ab(_field(rec, "negative", where), where, "negative")
        if pos == neg:
            raise DatasetError(f"{where}: 'positive' and 'negative' are both {pos}")
        out += _ab_pair_examples(q, pos, neg, i, p.stem, f"pos={pos}", answer_prefix)
    return LabelledPromptSet(name or p.stem, out, ("negative", "positive"), read="last", source=str(p),
                             notes="Contrast is in the answer token: both examples of a pair share the question.")


def load_ab_test_deploy(path: str | Path, *, name: str | None = None, answer_prefix: str = "") -> LabelledPromptSet:
    """``[{question, test, deploy, category}]`` (AB_ambiguous): question + test option (label 1
    "test") and question + deploy option (label 0 "deploy"), one group per record."""
    p = Path(path)
    out = []
    for i, rec in enumerate(read_records(p)):
        where = f"{p.name} record {i}"
        q = _field(rec, "question", where)
        t = _norm_ab(_field(rec, "test", where), where, "test")
        d = _norm_ab(_field(rec, "deploy", where), where, "deploy")
        if t == d:
            raise DatasetError(f"{where}: 'test' and 'deploy' are both {t}")
        out += _ab_pair_examples(q, t, d, i, p.stem, f"test={t}", answer_prefix)
    return LabelledPromptSet(name or p.stem, out, ("deploy", "test"), read="last", source=str(p),
                             notes="Contrast is in the answer token: both examples of a pair share the question.")


def load_framing(path: str | Path, *, name: str | None = None) -> LabelledPromptSet:
    """``[{prompt, label: "test"|"deploy", template, topic}]``: raw prompts framed as an
    evaluation item or as a real user request (this project's own set; see
    ``probe/data/eval_awareness/README.md``). Label 1 = test-like. Groups are topics (the same
    task in both framings never straddles a split); templates are the framing templates."""
    p = Path(path)
    out = []
    for i, rec in enumerate(read_records(p)):
        where = f"{p.name} record {i}"
        prompt = _field(rec, "prompt", where)
        lab = _field(rec, "label", where, allowed=("test", "deploy"))
        tmpl = _field(rec, "template", where)
        topic = str(rec.get("topic", f"_row{i}"))
        out.append(Example(prompt, 1 if lab == "test" else 0, None, f"topic:{topic}", tmpl,
                           {"source": p.stem, "record": i, "topic": topic}))
    return LabelledPromptSet(name or p.stem, out, ("deploy", "test"), read="last_prompt", source=str(p))


def load_prompt_list(path: str | Path, label: int, *, label_names: tuple[str, ...] = ("deploy", "test"),
                     field_name: str = "question", name: str | None = None, template: str | None = None
                     ) -> LabelledPromptSet:
    """A file of prompts that all have one label: ``[{question: ...}]`` or ``[str]`` (e.g. the
    Dolly/WildChat deploy controls). Combine with another class via :meth:`LabelledPromptSet.concat`."""
    p = Path(path)
    out = []
    for i, rec in enumerate(read_records(p)):
        where = f"{p.name} record {i}"
        q = rec if isinstance(rec, str) else _field(rec, field_name, where)
        if not q.strip():
            raise DatasetError(f"{where}: empty prompt")
        out.append(Example(q, int(label), None, f"{p.stem}#{i}", template or p.stem, {"source": p.stem, "record": i}))
    return LabelledPromptSet(name or p.stem, out, label_names, read="last_prompt", source=str(p))


def load_mrm(path: str | Path, *, split: str = "easy", dimension: str | None = None, name: str | None = None
             ) -> LabelledPromptSet:
    """MRMBench-style ``{input, output, label}`` records (JSON list or JSONL).

    ``split="easy"``: binary labels 0/1; ``"hard"``: three classes 0/1/2. Labels may be ints or
    digit strings. Read at the last token of input + output (MRMBench's protocol: frozen
    backbone, linear head on the last non-pad token). Optional ``group``/``template`` fields
    are used for splits.
    """
    p = Path(path)
    if split not in ("easy", "hard"):
        raise DatasetError(f"split must be 'easy' (binary) or 'hard' (3 classes); got {split!r}")
    K = 2 if split == "easy" else 3
    out = []
    for i, rec in enumerate(read_records(p)):
        where = f"{p.name} record {i}"
        inp = _field(rec, "input", where, types=(str, list))
        outp = _field(rec, "output", where)
        lab = _field(rec, "label", where, types=(int, str, float))
        try:
            li = int(lab)
            if float(lab) != li:
                raise ValueError
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: field 'label' is {lab!r}; expected an integer class") from None
        if not 0 <= li < K:
            raise DatasetError(f"{where}: field 'label' is {li}; the {split} split expects "
                               f"{'0 or 1' if K == 2 else '0, 1 or 2'}")
        out.append(Example(inp, li, outp, str(rec.get("group", f"{p.stem}#{i}")), rec.get("template"),
                           {"source": p.stem, "record": i}))
    names = ("worse", "better") if K == 2 else ("low", "mid", "high")
    return LabelledPromptSet(name or (dimension or p.stem), out, names, read="last", source=str(p))


def load_caa_file(path: str | Path, *, name: str | None = None, answer_prefix: str = "") -> LabelledPromptSet:
    """CAA A/B pairs (Rimsky et al. 2024) from a file: question + matching answer (label 1) and question +
    non-matching answer (label 0), read at the answer token, one group per question. (Formerly ``load_caa``;
    :func:`steering.data.load_caa` is the shipped CAA records by behaviour.)"""
    p = Path(path)
    out = []
    for i, rec in enumerate(read_records(p)):
        where = f"{p.name} record {i}"
        q = _field(rec, "question", where)
        m = _norm_ab(_field(rec, "answer_matching_behavior", where), where, "answer_matching_behavior")
        nm = _norm_ab(_field(rec, "answer_not_matching_behavior", where), where, "answer_not_matching_behavior")
        out += _ab_pair_examples(q, m, nm, i, p.parent.name or p.stem, f"match={m}", answer_prefix)
    return LabelledPromptSet(name or p.parent.name or p.stem, out, ("not_matching", "matching"), read="last",
                             source=str(p), notes="Contrast is in the answer token.")


def load_persona(path: str | Path, *, mode: str = "statement", name: str | None = None) -> LabelledPromptSet:
    """Anthropic persona statements (Perez et al. 2022).

    ``mode="statement"``: one example per statement, label 1 when a model with the trait would
    say it (``answer_matching_behavior == " Yes"``), read at the end of the question.
    ``mode="answer"``: two examples per record, question + " Yes"/" No", label 1 for the
    trait-matching answer, read at the answer token.
    """
    p = Path(path)
    if mode not in ("statement", "answer"):
        raise DatasetError(f"mode must be 'statement' or 'answer'; got {mode!r}")
    out = []
    for i, rec in enumerate(read_records(p)):
        where = f"{p.name} record {i}"
        q = _field(rec, "question", where)
        m = _field(rec, "answer_matching_behavior", where, allowed=(" Yes", " No", "Yes", "No"))
        nm = _field(rec, "answer_not_matching_behavior", where, allowed=(" Yes", " No", "Yes", "No"))
        if m.strip() == nm.strip():
            raise DatasetError(f"{where}: matching and non-matching answers are both {m!r}")
        if mode == "statement":
            out.append(Example(q, int(m.strip() == "Yes"), None, f"{p.stem}#{i}", None, {"source": p.stem, "record": i}))
        else:
            g = f"{p.stem}#{i}"
            out += [Example(q, 1, " " + m.strip(), g, f"match={m.strip()}", {"record": i}),
                    Example(q, 0, " " + nm.strip(), g, f"match={m.strip()}", {"record": i})]
    names = ("not_trait", "trait") if mode == "statement" else ("not_matching", "matching")
    return LabelledPromptSet(name or p.stem, out, names, read="last_prompt" if mode == "statement" else "last",
                             source=str(p))


_TURN = re.compile(r"\n\n(Human|Assistant): ")


def split_dialogue(text: str, where: str = "dialogue") -> tuple[list[dict], str]:
    """HH-RLHF text ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` -> (chat messages before the final
    assistant turn, final assistant turn)."""
    parts = _TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise DatasetError(f"{where}: expected '\\n\\nHuman: ...\\n\\nAssistant: ...' turns")
    turns = [(parts[j], parts[j + 1]) for j in range(1, len(parts) - 1, 2)]
    if turns[-1][0] != "Assistant":
        raise DatasetError(f"{where}: the dialogue does not end with an Assistant turn")
    msgs = [{"role": "user" if r == "Human" else "assistant", "content": c.strip()} for r, c in turns[:-1]]
    if not msgs or msgs[0]["role"] != "user":
        raise DatasetError(f"{where}: the dialogue must start with a Human turn")
    return msgs, turns[-1][1].strip()


def load_preference_pairs(path: str | Path | None = None, *, records: Sequence[dict] | None = None,
                          name: str | None = None, limit: int | None = None,
                          max_chars: int | None = None) -> LabelledPromptSet:
    """HH-RLHF ``{chosen, rejected}`` pairs (a file, or ``records``) -> MRMBench-style examples:
    input = the dialogue before the final assistant turn (chat messages), output = the final
    assistant turn, label 1 for chosen and 0 for rejected, one group per pair. Pairs whose
    prefixes differ are skipped (they are not a clean preference between two responses).
    ``max_chars`` skips long dialogues; ``limit`` keeps the first pairs that pass."""
    if (path is None) == (records is None):
        raise DatasetError("give exactly one of path= and records=")
    if records is None:
        p = Path(path)
        records, stem, source = read_records(p), p.stem, str(p)
    else:
        stem = source = name or "pairs"
    out = []
    kept = 0
    for i, rec in enumerate(records):
        where = f"{stem} record {i}"
        ch = _field(rec, "chosen", where)
        rj = _field(rec, "rejected", where)
        if max_chars is not None and max(len(ch), len(rj)) > max_chars:
            continue
        m1, o1 = split_dialogue(ch, where + " field 'chosen'")
        m2, o2 = split_dialogue(rj, where + " field 'rejected'")
        if m1 != m2 or not o1 or not o2 or o1 == o2:
            continue
        g = f"{stem}#{i}"
        out += [Example(m1, 1, o1, g, None, {"record": i}), Example(m1, 0, o2, g, None, {"record": i})]
        kept += 1
        if limit is not None and kept >= limit:
            break
    if not out:
        raise DatasetError(f"{source}: no usable chosen/rejected pairs")
    return LabelledPromptSet(name or "harmlessness", out, ("rejected", "chosen"), read="last", source=source)


def load_dataset(path: str | Path, **kw: Any) -> LabelledPromptSet:
    """Load a file by recognising its fields (see the table in the module docstring)."""
    recs = read_records(path)
    first = recs[0] if recs else {}
    keys = set(first) if isinstance(first, dict) else set()
    if {"question", "positive", "negative"} <= keys:
        return load_contrastive(path, **kw)
    if {"question", "test", "deploy"} <= keys:
        return load_ab_test_deploy(path, **kw)
    if {"prompt", "label", "template"} <= keys:
        return load_framing(path, **kw)
    if {"input", "output", "label"} <= keys:
        return load_mrm(path, **kw)
    if {"question", "answer_matching_behavior", "statement"} <= keys:
        return load_persona(path, **kw)
    if {"question", "answer_matching_behavior"} <= keys:
        return load_caa_file(path, **kw)
    if {"chosen", "rejected"} <= keys:
        return load_preference_pairs(path, **kw)
    raise DatasetError(f"{path}: cannot tell the format from the first record's fields {sorted(keys)}; "
                       "use a specific loader (load_contrastive, load_mrm, load_caa_file, ...)")


__getattr__ = renamed_names(__name__, {"load_caa": "load_caa_file"})
