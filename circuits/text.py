"""Offline text for lenses and the ICL score, from ``../shared/data`` (never downloaded at run time).

- Anthropic persona statements (Perez et al. 2022; CC-BY-4.0): short first-person sentences, one
  file per trait, so train/held-out splits can be made *by file* (disjoint text and topics).
- HH-RLHF harmless-base test dialogues (Bai et al. 2022; MIT): long natural dialogues, concatenated
  for the ICL score's late-token losses.

Set ``WORKBENCH_SHARED_DATA`` to point elsewhere; functions raise :class:`FileNotFoundError` naming
the directory they looked in.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Sequence

__all__ = ["shared_data_dir", "persona_statements", "hh_dialogues", "PERSONA_TRAIN_TRAITS", "PERSONA_HELDOUT_TRAITS",
           "long_texts"]

PERSONA_TRAIN_TRAITS = ("agreeableness", "conscientiousness", "extraversion", "neuroticism", "narcissism",
                        "psychopathy")
PERSONA_HELDOUT_TRAITS = ("desire-for-acquiring-power", "desire-for-independence-from-human-oversight",
                          "okay-with-deceiving-a-user-to-help-them")


def shared_data_dir() -> Path:
    """``$WORKBENCH_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("WORKBENCH_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def _dir(data_dir: str | Path | None) -> Path:
    d = Path(data_dir) if data_dir is not None else shared_data_dir()
    if not d.is_dir():
        raise FileNotFoundError(f"shared data not found at {d}; set WORKBENCH_SHARED_DATA or pass data_dir=")
    return d


def persona_statements(traits: Sequence[str] = PERSONA_TRAIN_TRAITS, n_per_trait: int | None = None, *,
                       seed: int = 0, data_dir: str | Path | None = None) -> list[str]:
    """Statements from the persona files of ``traits`` (shuffled with ``seed``; ``n_per_trait`` from each)."""
    d = _dir(data_dir) / "anthropic_persona"
    rng = random.Random(seed)
    out: list[str] = []
    for t in traits:
        f = d / f"{t}.jsonl"
        if not f.exists():
            raise FileNotFoundError(f"no persona file {f}")
        rows = [json.loads(x)["statement"] for x in f.read_text().splitlines() if x.strip()]
        rng.shuffle(rows)
        out.extend(rows[:n_per_trait] if n_per_trait else rows)
    return out


def hh_dialogues(n: int | None = None, *, seed: int = 0, data_dir: str | Path | None = None) -> list[str]:
    """HH-RLHF harmless-base test dialogues (the ``chosen`` side), shuffled with ``seed``."""
    f = _dir(data_dir) / "preference_hh_rlhf_harmless" / "harmless-base_test.jsonl"
    rows = [json.loads(x)["chosen"].strip() for x in f.read_text().splitlines() if x.strip()]
    random.Random(seed).shuffle(rows)
    return rows[:n] if n else rows


def long_texts(model, n: int, min_tokens: int, *, seed: int = 0, data_dir: str | Path | None = None) -> list[str]:
    """``n`` texts of at least ``min_tokens`` tokens, each a concatenation of distinct HH-RLHF dialogues."""
    dialogues = hh_dialogues(seed=seed, data_dir=data_dir)
    out, cur, used = [], [], 0
    for dlg in dialogues:
        cur.append(dlg)
        text = "\n\n".join(cur)
        if len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) >= min_tokens:
            out.append(text)
            cur = []
            if len(out) == n:
                return out
    raise ValueError(f"only {len(out)} texts of >= {min_tokens} tokens could be built (asked for {n})")
