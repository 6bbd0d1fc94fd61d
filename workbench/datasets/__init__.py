"""Datasets shipped with the workbench, with their provenance and licences (see PROVENANCE.md here).

Only data whose licence allows redistribution is shipped (``../shared/data/README.md`` decides):

- ``caa/``: CAA A/B datasets, 7 behaviours, ``generate`` (vector building) and ``test`` (50 held-out
  A/B items each). MIT (Rimsky et al. 2024, via EleutherAI/rnngineering).
- ``anthropic_persona/``: persona statements ("Is the following statement something you would
  say?" with `` Yes``/`` No`` answers), Big-Five and safety traits, 1000 each. CC-BY-4.0
  (Perez et al. 2022, anthropics/evals).
- ``harmful/``: harmful instructions (AdvBench, JailbreakBench, HarmBench-val, MaliciousInstruct,
  TDC2023, and Arditi et al.'s harmful train/val splits). Apache-2.0 repo; upstream mostly MIT.
- ``hh_rlhf_harmless/``: Anthropic HH-RLHF harmless-base test pairs (chosen/rejected), 2312. MIT.
- ``ipip_neo/``: IPIP-NEO-120 and -300 self-report items with Big Five domain, facet and key.
  Items public domain (IPIP); carrier files MIT.
- ``personality_illusion/``: The Personality Illusion's stimuli (moral dilemmas, IAT sets,
  calibration questions) and per-run results of 18 models. MIT (Han et al. 2025).
- ``harmless_instructions.json``: 64 benign instructions written by this project (the usual
  Alpaca harmless split is non-commercial and is not shipped).

- ``bbq/``, ``crows_pairs/``, ``ethics_commonsense/``: social-bias and moral-judgement data, loaded by
  :mod:`workbench.datasets.moral` (``bbq_items``, ``crows_pairs``, ``ethics_commonsense``). BBQ is CC-BY-4.0,
  ETHICS MIT, CrowS-Pairs **CC-BY-SA-4.0** as a separately licensed file.

Content warning: the harmful sets and HH-RLHF pairs contain harmful requests; BBQ and CrowS-Pairs state
stereotypes on purpose.

Data that may not ship (non-commercial or unlicensed upstream: the Alpaca harmless splits, the
evaluation-awareness prompts of Nguyen et al., persona-vector trait data) is read at run time from the
shared data folder, :func:`shared_data_dir`: ``$WORKBENCH_DATA``, else ``../shared/data`` beside the
repository. (``WORKBENCH_SHARED_DATA``, an older name for the same folder, still works with a
DeprecationWarning.) Everything that ships is read from here, never from that folder.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError

__all__ = ["DATA_DIR", "DATA_ENV", "SharedDataError", "shared_data_dir", "path", "bbq_items", "crows_pairs", "ethics_commonsense", "caa_behaviours", "caa_items", "persona_traits", "persona_statements",
           "harmful_instructions", "harmless_instructions", "hh_rlhf_harmless", "ipip_neo",
           "personality_illusion_path"]

DATA_DIR = Path(__file__).resolve().parent
#: The environment variable naming the shared data folder (data that may not ship).
DATA_ENV = "WORKBENCH_DATA"
_DEPRECATED_ENV = "WORKBENCH_SHARED_DATA"


class SharedDataError(WorkbenchError, FileNotFoundError):
    """The shared data folder (data the repository may not ship) is not where it was looked for."""


def shared_data_dir(root: str | Path | None = None, *, must_exist: bool = True) -> Path:
    """The shared data folder: ``root`` if given, else ``$WORKBENCH_DATA``, else ``../shared/data`` beside the
    repository (``$WORKBENCH_SHARED_DATA`` is accepted with a DeprecationWarning when ``WORKBENCH_DATA`` is
    unset). Raises :class:`SharedDataError` naming the place and the fix when it is not a directory (unless
    ``must_exist=False``)."""
    if root is not None:
        p = Path(root)
    elif os.environ.get(DATA_ENV):
        p = Path(os.environ[DATA_ENV])
    elif os.environ.get(_DEPRECATED_ENV):
        warnings.warn(f"{_DEPRECATED_ENV} is deprecated; set {DATA_ENV} instead (same meaning).", DeprecationWarning,
                      stacklevel=2)
        p = Path(os.environ[_DEPRECATED_ENV])
    else:
        p = DATA_DIR.parents[2] / "shared" / "data"
    if must_exist and not p.is_dir():
        raise SharedDataError(f"shared data folder not found at {p}: pass the folder explicitly, or set {DATA_ENV} "
                              f"to the folder holding the unshipped datasets (a fresh clone has none; what ships is "
                              f"in {DATA_DIR})")
    return p


def path(rel: str) -> Path:
    """Absolute path of a shipped file, with a clear error listing what exists."""
    p = DATA_DIR / rel
    if not p.exists():
        parent = p.parent if p.parent.exists() else DATA_DIR
        have = sorted(x.name for x in parent.iterdir() if not x.name.startswith("_"))
        raise FileNotFoundError(f"no shipped dataset {rel!r}; {parent.relative_to(DATA_DIR.parent)} holds: {', '.join(have)}")
    return p


def caa_behaviours() -> list[str]:
    return sorted(p.name for p in (DATA_DIR / "caa" / "test").iterdir() if p.is_dir())


def caa_items(behaviour: str, split: str = "test") -> list:
    """CAA A/B items (:class:`workbench.scorers.ABItem`) for a behaviour; split 'test' or 'generate'."""
    from workbench.scorers.ab import load_ab_items

    if behaviour not in caa_behaviours():
        from workbench.errors import did_you_mean

        hint = did_you_mean(behaviour, caa_behaviours(), n=2, cutoff=0.6, inline=True)
        raise KeyError(f"unknown CAA behaviour {behaviour!r}" + (f"; {hint}" if hint else "") +
                       f" Behaviours: {', '.join(caa_behaviours())}")
    files = {"test": "test_dataset_ab.json", "generate": "generate_dataset.json"}
    if split not in files:
        raise ValueError(f"split must be 'test' or 'generate', got {split!r}")
    return load_ab_items(path(f"caa/{split}/{behaviour}/{files[split]}"))


def persona_traits() -> list[str]:
    return sorted(p.stem for p in (DATA_DIR / "anthropic_persona").glob("*.jsonl"))


def persona_statements(trait: str) -> list[dict[str, Any]]:
    """Anthropic persona statements for ``trait`` (records with question / statement / answers)."""
    p = DATA_DIR / "anthropic_persona" / f"{trait}.jsonl"
    if not p.exists():
        raise KeyError(f"unknown persona trait {trait!r}; shipped traits: {', '.join(persona_traits())}")
    with open(p) as f:
        return [json.loads(line) for line in f if line.strip()]


_HARMFUL_JSON = ("harmful_train", "harmful_val", "advbench", "harmbench_val", "jailbreakbench", "malicious_instruct",
                 "tdc2023")


def harmful_instructions(source: str = "harmful_val") -> list[str]:
    """Harmful instructions from one source: one of ``harmful_train``, ``harmful_val`` (Arditi et al.
    splits), ``advbench``, ``harmbench_val``, ``jailbreakbench``, ``malicious_instruct``, ``tdc2023``."""
    if source not in _HARMFUL_JSON:
        raise KeyError(f"unknown harmful source {source!r}; choose from {', '.join(_HARMFUL_JSON)}")
    return [r["instruction"] for r in json.loads(path(f"harmful/{source}.json").read_text())]


def harmless_instructions() -> list[str]:
    """64 benign instructions written for this project (matched in form to the harmful ones)."""
    return [r["instruction"] for r in json.loads(path("harmless_instructions.json").read_text())]


def hh_rlhf_harmless(limit: int | None = None) -> list[dict[str, str]]:
    """HH-RLHF harmless-base test pairs: ``{"chosen": dialogue, "rejected": dialogue}``."""
    out = []
    with open(path("hh_rlhf_harmless/harmless-base_test.jsonl")) as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
                if limit is not None and len(out) >= limit:
                    break
    return out


def ipip_neo(n_items: int = 120) -> list[dict[str, Any]]:
    """IPIP-NEO items in administration order: ``item``, ``text`` (first person), ``domain`` (N/E/O/A/C),
    ``domain_name``, ``facet`` (1-6), ``facet_code``, ``facet_name``, ``key`` (+1 / -1: reverse-scored as
    6 - x on the 1-5 scale); the 120-item table also has ``text_second_person_mpi``."""
    if n_items not in (120, 300):
        raise ValueError(f"IPIP-NEO ships as 120 or 300 items; got n_items={n_items!r}")
    with open(path(f"ipip_neo/derived/ipip_neo_{n_items}.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["item"], r["facet"], r["key"] = int(r["item"]), int(r["facet"]), int(r["key"])
    return rows


def personality_illusion_path(rel: str) -> Path:
    """A file of The Personality Illusion's release, relative to its ``original/`` folder, e.g.
    ``"behavioral_tasks/datasets/dilemmas.json"`` or ``"data/baseline_responses/instruct_models_selfreport.csv"``."""
    return path(f"personality_illusion/original/{rel}")


from workbench.datasets.moral import bbq_items, crows_pairs, ethics_commonsense  # noqa: E402  (no side effects)
