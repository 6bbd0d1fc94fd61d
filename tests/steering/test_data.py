"""Data loaders (shared folder) and the shipped prompt sets."""

import json

import pytest

from steering import data
from steering.data import (
    CAA_BEHAVIOURS, DataError, data_root, load_caa, load_harmful, load_harmless, load_persona_statements,
    neutral_prompts, persona_questions,
)


def test_shipped_prompt_sets():
    n, q = neutral_prompts(), persona_questions()
    assert len(n) == 32 and len(set(n)) == 32 and neutral_prompts(4) == n[:4]
    assert len(q) == 20 and len(set(q)) == 20
    for f in ("neutral_prompts.json", "persona_questions.json", "personas.json"):
        doc = json.loads((data.PACKAGE_DATA / f).read_text())
        assert "licence" in doc or "Apache-2.0" in doc["description"]


def test_data_root_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="set WORKBENCH_DATA"):
        data_root()
    assert data_root(tmp_path) == tmp_path


def test_shared_loaders(shared_data):
    for b in CAA_BEHAVIOURS:
        assert len(load_caa(b, "test", root=shared_data)) == 50
    gen = load_caa("myopic-reward", "generate", root=shared_data, n=20, seed=1)
    assert len(gen) == 20 and gen == load_caa("myopic-reward", "generate", root=shared_data, n=20, seed=1)
    st = load_persona_statements("narcissism", root=shared_data, n=10)
    assert sum(r["answer_matching_behavior"] == " Yes" for r in st) == 5  # balanced
    assert len(load_harmful("jailbreakbench", root=shared_data)) == 100
    assert len(load_harmless("val", root=shared_data, n=7)) == 7
    with pytest.raises(DataError, match="unknown CAA behaviour"):
        load_caa("honesty", root=shared_data)
    with pytest.raises(DataError, match="no persona statements 'openness'"):
        load_persona_statements("openness", root=shared_data)
    with pytest.raises(DataError, match="unknown harmful source"):
        load_harmful("nope", root=shared_data)


def test_no_harmless_alpaca_text_is_shipped(shared_data):
    """The Alpaca harmless split (non-commercial upstream) must not be copied into the package."""
    alpaca = {r["instruction"] for r in json.loads((shared_data / "refusal_direction/splits/harmless_val.json").read_text())}
    shipped = set()
    for f in data.PACKAGE_DATA.glob("*.json"):
        doc = json.loads(f.read_text())
        shipped |= set(doc.get("prompts", []))
    assert not (alpaca & shipped)
