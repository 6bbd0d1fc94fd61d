"""Data for steering: the project's own prompt sets, and subsampling wrappers over the datasets
the workbench ships (:mod:`workbench.datasets`, with provenance and licences).

Shipped with this package (written for this project, Apache-2.0; ``steering/data/``):

- :func:`neutral_prompts`: 32 everyday requests for calibration (norms, KL);
- :func:`persona_questions`: 20 open questions that let a persona show in free text;
- ``personas.json``: persona definitions (see :mod:`steering.personas`).

From :mod:`workbench.datasets`, as plain records / strings, reproducibly subsampled:

- :func:`load_caa`: CAA A/B records (Rimsky et al. 2024; MIT), ``test`` or ``generate``;
- :func:`load_persona_statements`: Anthropic persona statements (Perez et al. 2022; CC-BY-4.0),
  balanced between " Yes"- and " No"-matching items;
- :func:`load_harmful`: harmful instructions (Arditi et al. 2024's splits and processed sets);
- :func:`load_harmless`: the project's 64 benign instructions (default), or Arditi et al.'s Alpaca
  harmless splits read at run time from ``../shared/data`` (non-commercial upstream: never
  copied into the repository).
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

__all__ = [
    "data_root", "DataError", "CAA_BEHAVIOURS", "load_caa", "load_persona_statements", "load_harmful",
    "load_harmless", "neutral_prompts", "persona_questions", "PACKAGE_DATA", "as_record",
]

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
CAA_BEHAVIOURS = ("coordinate-other-ais", "corrigible-neutral-HHH", "hallucination", "myopic-reward", "refusal",
                  "survival-instinct", "sycophancy")


class DataError(WorkbenchError, ValueError):
    pass


def as_record(item: Any) -> dict:
    """A CAA-format dict from a dict or a :class:`workbench.scorers.ab.ABItem`."""
    if isinstance(item, dict):
        return item
    if hasattr(item, "question") and hasattr(item, "matching") and hasattr(item, "not_matching"):
        return {"question": item.question, "answer_matching_behavior": item.matching,
                "answer_not_matching_behavior": item.not_matching}
    raise DataError(f"not an A/B record: {type(item).__name__}")


def data_root(root: str | Path | None = None) -> Path:
    """The shared data folder (only needed for data the repository may not ship):
    :func:`workbench.datasets.shared_data_dir` (``root``, else ``$WORKBENCH_DATA``, else ``../shared/data``)."""
    from workbench.datasets import SharedDataError, shared_data_dir

    try:
        return shared_data_dir(root)
    except SharedDataError as e:
        raise DataError(f"{e}; the Alpaca harmless splits (refusal_direction/) are not shipped") from None


def _subsample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    idx = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in idx]


def load_caa(behaviour: str, split: str = "test", *, n: int | None = None, seed: int = 0) -> list[dict]:
    """CAA A/B records: ``split="test"`` (50 held-out per behaviour) or ``"generate"`` (vector-building pairs)."""
    from workbench import datasets

    if behaviour not in CAA_BEHAVIOURS:
        raise DataError(f"unknown CAA behaviour {behaviour!r}; have {CAA_BEHAVIOURS}")
    if split not in ("test", "generate"):
        raise DataError(f"split must be 'test' or 'generate', got {split!r}")
    return _subsample([as_record(it) for it in datasets.caa_items(behaviour, split)], n, seed)


def load_persona_statements(name: str, *, n: int | None = None, seed: int = 0) -> list[dict]:
    """Persona statements (``question``, ``statement``, ``answer_matching_behavior`` " Yes"/" No"...).

    ``name`` is a shipped trait (:func:`workbench.datasets.persona_traits`) or the path of a user's own
    ``.json`` (a list) / ``.jsonl`` file of such records (``question`` and ``answer_matching_behavior`` /
    ``answer_not_matching_behavior``, CAA format). With ``n``, a balanced subsample: half whose matching
    answer is " Yes", half " No", so a yes-bias cannot pass for the trait."""
    from workbench import datasets

    p = Path(name)
    if p.suffix in (".json", ".jsonl"):
        if not p.exists():
            raise DataError(f"statement file not found: {p}")
        text = p.read_text()
        try:
            recs = [json.loads(x) for x in text.splitlines() if x.strip()] if p.suffix == ".jsonl" else json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{p} is not valid JSON: {e}") from e
        bad = [i for i, r in enumerate(recs) if not {"question", "answer_matching_behavior",
                                                     "answer_not_matching_behavior"} <= set(r)]
        if bad:
            raise DataError(f"{p}: record {bad[0]} lacks 'question', 'answer_matching_behavior' or "
                            "'answer_not_matching_behavior' (the persona-statement / CAA format)")
    else:
        try:
            recs = datasets.persona_statements(name)
        except KeyError as e:
            raise DataError(f"no persona statements {name!r}; have {datasets.persona_traits()} (or give the path of a "
                            ".json/.jsonl statement file)") from e
    if n is None:
        return recs
    yes = [r for r in recs if r["answer_matching_behavior"].strip() == "Yes"]
    no = [r for r in recs if r["answer_matching_behavior"].strip() == "No"]
    out = _subsample(yes, (n + 1) // 2, seed) + _subsample(no, n // 2, seed + 1)
    random.Random(seed).shuffle(out)
    return out


def load_harmful(source: str = "jailbreakbench", *, n: int | None = None, seed: int = 0) -> list[str]:
    """Harmful instructions (``harmful_train``, ``harmful_val``, ``advbench``, ``harmbench_val``,
    ``jailbreakbench``, ``malicious_instruct``, ``tdc2023``)."""
    from workbench import datasets

    try:
        return _subsample(datasets.harmful_instructions(source), n, seed)
    except KeyError as e:
        raise DataError(str(e)) from e


def load_harmless(source: str = "project", *, n: int | None = None, seed: int = 0,
                  root: str | Path | None = None) -> list[str]:
    """Benign instructions: ``"project"`` (64 written for this project, shipped) or ``"alpaca_train"`` /
    ``"alpaca_val"`` / ``"alpaca_test"`` (Arditi et al.'s splits, from the shared folder only)."""
    from workbench import datasets

    if source == "project":
        return _subsample(datasets.harmless_instructions(), n, seed)
    if source in ("alpaca_train", "alpaca_val", "alpaca_test"):
        split = source.split("_")[1]
        recs = json.loads((data_root(root) / "refusal_direction" / "splits" / f"harmless_{split}.json").read_text())
        return _subsample([r["instruction"] for r in recs], n, seed)
    raise DataError(f"unknown harmless source {source!r}; use 'project', 'alpaca_train', 'alpaca_val' or 'alpaca_test'")


@lru_cache(maxsize=None)
def _package_prompts(name: str) -> tuple[str, ...]:
    return tuple(json.loads((PACKAGE_DATA / name).read_text())["prompts"])


def neutral_prompts(n: int | None = None) -> list[str]:
    """The shipped neutral requests (first ``n``)."""
    p = list(_package_prompts("neutral_prompts.json"))
    return p if n is None else p[:n]


def persona_questions(n: int | None = None) -> list[str]:
    """The shipped persona-eliciting questions (first ``n``)."""
    p = list(_package_prompts("persona_questions.json"))
    return p if n is None else p[:n]
