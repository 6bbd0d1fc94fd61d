"""Offline text for lenses and the ICL score, from the datasets the workbench ships (:mod:`workbench.datasets`).

- Anthropic persona statements (Perez et al. 2022; CC-BY-4.0): short first-person sentences, one
  file per trait, so train/held-out splits can be made *by file* (disjoint text and topics).
- HH-RLHF harmless-base test dialogues (Bai et al. 2022; MIT): long natural dialogues, concatenated
  for the ICL score's late-token losses.

Both ship in ``workbench/datasets/`` (byte-identical to the copies in ``../shared/data``), so a fresh clone
has them. ``data_dir=`` reads the same files from another folder with the shared layout
(``anthropic_persona/<trait>.jsonl``, ``preference_hh_rlhf_harmless/harmless-base_test.jsonl``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

from workbench import datasets
from workbench.datasets import shared_data_dir

__all__ = ["shared_data_dir", "persona_statement_texts", "hh_dialogues", "PERSONA_TRAIN_TRAITS",
           "PERSONA_HELDOUT_TRAITS", "long_texts"]

PERSONA_TRAIN_TRAITS = ("agreeableness", "conscientiousness", "extraversion", "neuroticism", "narcissism",
                        "psychopathy")
PERSONA_HELDOUT_TRAITS = ("desire-for-acquiring-power", "desire-for-independence-from-human-oversight",
                          "okay-with-deceiving-a-user-to-help-them")


def _jsonl(f: Path) -> list[dict[str, Any]]:
    if not f.exists():
        raise FileNotFoundError(f"no file {f}")
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()]


def persona_statement_texts(traits: Sequence[str] = PERSONA_TRAIN_TRAITS, n_per_trait: int | None = None, *,
                            seed: int = 0, data_dir: str | Path | None = None) -> list[str]:
    """The statement texts of the persona files of ``traits`` (shuffled with ``seed``; ``n_per_trait`` from each).

    Plain strings for lens training (compare :func:`workbench.datasets.persona_statements`, one trait's full
    records with questions and answers)."""
    rng = random.Random(seed)
    out: list[str] = []
    for t in traits:
        recs = (datasets.persona_statements(t) if data_dir is None
                else _jsonl(shared_data_dir(data_dir) / "anthropic_persona" / f"{t}.jsonl"))
        rows = [r["statement"] for r in recs]
        rng.shuffle(rows)
        out.extend(rows[:n_per_trait] if n_per_trait else rows)
    return out


def hh_dialogues(n: int | None = None, *, seed: int = 0, data_dir: str | Path | None = None) -> list[str]:
    """HH-RLHF harmless-base test dialogues (the ``chosen`` side), shuffled with ``seed``."""
    recs = (datasets.hh_rlhf_harmless() if data_dir is None
            else _jsonl(shared_data_dir(data_dir) / "preference_hh_rlhf_harmless" / "harmless-base_test.jsonl"))
    rows = [r["chosen"].strip() for r in recs]
    random.Random(seed).shuffle(rows)
    return rows[:n] if n else rows


def long_texts(model, n: int, min_tokens: int, *, seed: int = 0, data_dir: str | Path | None = None) -> list[str]:
    """``n`` texts of at least ``min_tokens`` tokens, each a concatenation of distinct HH-RLHF dialogues."""
    dialogues = hh_dialogues(seed=seed, data_dir=data_dir)
    out, cur = [], []
    for dlg in dialogues:
        cur.append(dlg)
        text = "\n\n".join(cur)
        if len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) >= min_tokens:
            out.append(text)
            cur = []
            if len(out) == n:
                return out
    raise ValueError(f"only {len(out)} texts of >= {min_tokens} tokens could be built (asked for {n})")
