"""circuits.text reads the persona statements and HH-RLHF dialogues that ship in workbench.datasets."""

import pytest

from circuits.text import PERSONA_HELDOUT_TRAITS, hh_dialogues, persona_statement_texts


def test_shipped_text_needs_no_shared_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "absent"))  # the shared folder is not consulted
    texts = persona_statement_texts(PERSONA_HELDOUT_TRAITS, n_per_trait=5, seed=2)
    assert len(texts) == 15 and all(isinstance(t, str) and t for t in texts)
    dlg = hh_dialogues(4, seed=1)
    assert len(dlg) == 4 and all(d.startswith("Human:") for d in dlg)
    with pytest.raises(KeyError, match="unknown persona trait"):
        persona_statement_texts(["no-such-trait"])


def test_shipped_text_equals_the_shared_copy(shared_data):
    assert persona_statement_texts(n_per_trait=7, seed=3) == persona_statement_texts(n_per_trait=7, seed=3,
                                                                                      data_dir=shared_data)
    assert hh_dialogues(20, seed=4) == hh_dialogues(20, seed=4, data_dir=shared_data)
