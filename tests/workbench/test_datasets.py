"""Shipped datasets: every file matches the sha256 in its upstream provenance; loaders work."""

import re
from pathlib import Path

import pytest

from workbench import datasets
from workbench.results import file_sha256


def _documented_hashes() -> dict[tuple[Path, str], str]:
    """(folder holding the provenance file, file name) -> sha256, from the upstream tables."""
    rows = {}
    for prov in datasets.DATA_DIR.rglob("PROVENANCE*.md"):
        if prov.parent == datasets.DATA_DIR:
            continue
        for m in re.finditer(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|", prov.read_text(), re.M):
            rows[(prov.parent, m.group(1))] = m.group(2)
            if prov.parent.name == "harmful":  # shipped flat: splits/x.json and processed/x.json -> x.json
                rows[(prov.parent, Path(m.group(1)).name)] = m.group(2)
    return rows


def test_every_shipped_data_file_matches_its_documented_sha256():
    rows = _documented_hashes()
    shipped = [p for p in datasets.DATA_DIR.rglob("*") if p.suffix in (".json", ".jsonl", ".csv")
               and p.name != "harmless_instructions.json"]  # written by this project
    assert len(shipped) > 40
    for p in shipped:
        keys = [(f, str(p.relative_to(f))) for f in p.parents if f.is_relative_to(datasets.DATA_DIR)]
        key = next((k for k in keys if k in rows), None)
        assert key is not None, f"{p} has no documented sha256"
        assert file_sha256(p) == rows[key], p


def test_loaders():
    assert datasets.caa_behaviours() == ["coordinate-other-ais", "corrigible-neutral-HHH", "hallucination",
                                         "myopic-reward", "refusal", "survival-instinct", "sycophancy"]
    items = datasets.caa_items("sycophancy")
    assert len(items) == 50 and items[0].matching in ("(A)", "(B)")
    assert len(datasets.caa_items("refusal", "generate")) == 408
    assert len(datasets.persona_statements("narcissism")) == 1000
    assert len(datasets.harmful_instructions("jailbreakbench")) == 100
    assert len(datasets.harmless_instructions()) == 64
    assert set(datasets.hh_rlhf_harmless(limit=3)[0]) == {"chosen", "rejected"}
    with pytest.raises(KeyError, match="did you mean"):
        datasets.caa_items("sycophantic")
    with pytest.raises(KeyError, match="shipped traits"):
        datasets.persona_statements("openness-to-cheese")


def test_one_shared_data_folder_and_one_variable(monkeypatch, tmp_path):
    import warnings

    from workbench.datasets import SharedDataError, shared_data_dir

    monkeypatch.delenv("WORKBENCH_SHARED_DATA", raising=False)
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path and shared_data_dir(tmp_path / "x", must_exist=False) == tmp_path / "x"
    monkeypatch.delenv("WORKBENCH_DATA")
    assert shared_data_dir(must_exist=False).parts[-2:] == ("shared", "data")
    old = tmp_path / "old"
    old.mkdir()
    monkeypatch.setenv("WORKBENCH_SHARED_DATA", str(old))
    with pytest.warns(DeprecationWarning, match="set WORKBENCH_DATA instead"):
        assert shared_data_dir() == old
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path))  # the current name wins, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shared_data_dir() == tmp_path
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "missing"))
    with pytest.raises(SharedDataError, match="set WORKBENCH_DATA") as e:
        shared_data_dir()
    assert isinstance(e.value, FileNotFoundError) and str(tmp_path / "missing") in str(e.value)
