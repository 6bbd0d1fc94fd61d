"""Data for steering: the project's own shipped prompt sets, and loaders for the shared datasets.

Shipped with the package (written for this project, Apache-2.0; see ``steering/data/``):

- :func:`neutral_prompts`: 32 everyday requests for calibration (norms, KL);
- :func:`persona_questions`: 20 open questions that let a persona show in free text;
- ``personas.json``: persona definitions (see :mod:`steering.personas`).

Loaders for datasets that live outside the repository (``../shared/data`` beside the checkout,
or ``$WORKBENCH_DATA``, or ``root=``), each validated and subsampled reproducibly:

- :func:`load_caa`: CAA A/B records (Rimsky et al. 2024; MIT);
- :func:`load_persona_statements`: Anthropic model-written persona statements (Perez et al.
  2022; CC-BY-4.0), ``answer_matching_behavior`` " Yes"/" No";
- :func:`load_harmful`: harmful instructions (Arditi et al. 2024's splits and processed sets;
  Apache-2.0/MIT);
- :func:`load_harmless`: the Alpaca harmless splits (non-commercial upstream: read at run
  time from the shared folder only, never copied into the repository).
"""

from __future__ import annotations

import json
import os
import random
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "data_root", "DataError", "CAA_BEHAVIOURS", "load_caa", "load_persona_statements", "load_harmful",
    "load_harmless", "neutral_prompts", "persona_questions", "PACKAGE_DATA",
]

PACKAGE_DATA = Path(__file__).resolve().parent / "data"
CAA_BEHAVIOURS = ("coordinate-other-ais", "corrigible-neutral-HHH", "hallucination", "myopic-reward", "refusal",
                  "survival-instinct", "sycophancy")
_HARMFUL = {"harmful_train": "splits/harmful_train.json", "harmful_val": "splits/harmful_val.json",
            "harmful_test": "splits/harmful_test.json", "advbench": "processed/advbench.json",
            "jailbreakbench": "processed/jailbreakbench.json", "harmbench_val": "processed/harmbench_val.json",
            "malicious_instruct": "processed/malicious_instruct.json", "tdc2023": "processed/tdc2023.json"}


class DataError(ValueError):
    pass


def data_root(root: str | Path | None = None) -> Path:
    """The shared data folder: ``root``, else ``$WORKBENCH_DATA``, else ``../shared/data`` beside the repo."""
    if root is not None:
        p = Path(root)
    elif os.environ.get("WORKBENCH_DATA"):
        p = Path(os.environ["WORKBENCH_DATA"])
    else:
        p = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not p.is_dir():
        raise DataError(
            f"shared data folder not found at {p}: pass root=..., or set WORKBENCH_DATA to the folder holding "
            f"caa/, anthropic_persona/ and refusal_direction/"
        )
    return p


def _subsample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    idx = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in idx]


def load_caa(behaviour: str, split: str = "test", *, root: str | Path | None = None, n: int | None = None,
             seed: int = 0) -> list[dict]:
    """CAA A/B records: ``split="test"`` (50 held-out per behaviour) or ``"generate"`` (vector-building pairs)."""
    if behaviour not in CAA_BEHAVIOURS:
        raise DataError(f"unknown CAA behaviour {behaviour!r}; have {CAA_BEHAVIOURS}")
    rel = {"test": f"caa/test/{behaviour}/test_dataset_ab.json",
           "generate": f"caa/generate/{behaviour}/generate_dataset.json"}.get(split)
    if rel is None:
        raise DataError(f"split must be 'test' or 'generate', got {split!r}")
    recs = json.loads((data_root(root) / rel).read_text())
    for i, r in enumerate(recs):
        if not {"question", "answer_matching_behavior", "answer_not_matching_behavior"} <= set(r):
            raise DataError(f"{rel} record {i} is not a CAA A/B record (keys {sorted(r)})")
    return _subsample(recs, n, seed)


def load_persona_statements(name: str, *, root: str | Path | None = None, n: int | None = None,
                            seed: int = 0) -> list[dict]:
    """Persona statements (``question``, ``statement``, ``answer_matching_behavior`` " Yes"/" No"...).

    With ``n``, a balanced subsample: half whose matching answer is " Yes", half " No", so a
    yes-bias cannot pass for the trait."""
    path = data_root(root) / "anthropic_persona" / f"{name}.jsonl"
    if not path.exists():
        have = sorted(p.stem for p in path.parent.glob("*.jsonl"))
        raise DataError(f"no persona statements {name!r}; have {have}")
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if n is None:
        return recs
    yes = [r for r in recs if r["answer_matching_behavior"].strip() == "Yes"]
    no = [r for r in recs if r["answer_matching_behavior"].strip() == "No"]
    out = _subsample(yes, (n + 1) // 2, seed) + _subsample(no, n // 2, seed + 1)
    random.Random(seed).shuffle(out)
    return out


def load_harmful(source: str = "jailbreakbench", *, root: str | Path | None = None, n: int | None = None,
                 seed: int = 0) -> list[str]:
    """Harmful instructions from Arditi et al.'s splits/processed sets (``source`` in the table)."""
    if source not in _HARMFUL:
        raise DataError(f"unknown harmful source {source!r}; have {sorted(_HARMFUL)}")
    recs = json.loads((data_root(root) / "refusal_direction" / _HARMFUL[source]).read_text())
    return _subsample([r["instruction"] for r in recs], n, seed)


def load_harmless(split: str = "val", *, root: str | Path | None = None, n: int | None = None,
                  seed: int = 0) -> list[str]:
    """Harmless (Alpaca) instructions from the shared folder (never shipped: non-commercial upstream)."""
    if split not in ("train", "val", "test"):
        raise DataError(f"split must be train, val or test, got {split!r}")
    recs = json.loads((data_root(root) / "refusal_direction" / "splits" / f"harmless_{split}.json").read_text())
    return _subsample([r["instruction"] for r in recs], n, seed)


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
