"""Data wrappers over the shipped datasets, and the project's own prompt sets."""

import json

import pytest

from steering import data
from steering.data import (
    CAA_BEHAVIOURS,
    DataError,
    data_root,
    load_caa,
    load_harmful,
    load_harmless,
    load_persona_statements,
    neutral_prompts,
    persona_questions,
)


def test_shipped_prompt_sets():
    n, q = neutral_prompts(), persona_questions()
    assert len(n) == 32 and len(set(n)) == 32 and neutral_prompts(4) == n[:4]
    assert len(q) == 20 and len(set(q)) == 20
    for f in ("neutral_prompts.json", "persona_questions.json", "personas.json"):
        doc = json.loads((data.PACKAGE_DATA / f).read_text())
        assert "licence" in doc or "Apache-2.0" in doc["description"]


def test_loaders_subsample_reproducibly():
    for b in CAA_BEHAVIOURS:
        assert len(load_caa(b, "test")) == 50
    gen = load_caa("myopic-reward", "generate", n=20, seed=1)
    assert len(gen) == 20 and gen == load_caa("myopic-reward", "generate", n=20, seed=1)
    assert set(gen[0]) >= {"question", "answer_matching_behavior", "answer_not_matching_behavior"}
    st = load_persona_statements("narcissism", n=10)
    assert sum(r["answer_matching_behavior"] == " Yes" for r in st) == 5  # balanced
    assert len(load_harmful("jailbreakbench")) == 100 and len(load_harmful("harmful_val", n=5)) == 5
    assert len(load_harmless(n=7)) == 7
    with pytest.raises(DataError, match="unknown CAA behaviour"):
        load_caa("honesty")
    with pytest.raises(DataError, match="no persona statements 'openness'"):
        load_persona_statements("openness")
    with pytest.raises(DataError, match="unknown harmful source"):
        load_harmful("nope")
    with pytest.raises(DataError, match="unknown harmless source"):
        load_harmless("alpaca")


def test_data_root_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="set WORKBENCH_DATA"):
        data_root()
    assert data_root(tmp_path) == tmp_path


def test_alpaca_is_read_from_the_shared_folder_and_never_shipped(shared_data):
    alpaca = set(load_harmless("alpaca_val", root=shared_data))
    assert len(load_harmless("alpaca_val", root=shared_data, n=7)) == 7
    shipped = set()
    for f in data.PACKAGE_DATA.glob("*.json"):
        shipped |= set(json.loads(f.read_text()).get("prompts", []))
    assert alpaca and not (alpaca & shipped)
