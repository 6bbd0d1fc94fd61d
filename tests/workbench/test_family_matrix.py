"""tools/family_matrix.py --update: only the rerun families' rows, the counts line and the header note change."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("family_matrix", Path(__file__).parents[2] / "tools" / "family_matrix.py")
fm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fm)

TABLE = """# Model families

Written by the tool. Rows rerun with `--update` (last on 2026-01-01): aa.

2 pass, 0 partly, 1 fail, 0 could not be built from their config class alone; not reached: bb, dd.

| model_type | class | status | quirks handled / why not |
|---|---|---|---|
| `aa` | AaForCausalLM | passes | - |
| `cc` | CcForCausalLM | fails | tl: boom |
| `ee` | EeForCausalLM | passes | tied embeddings |
"""
ORDER = ["aa", "bb", "cc", "dd", "ee"]


def test_update_replaces_and_inserts_rows_and_recounts():
    text = fm.replace_row(TABLE, ("cc", "CcForCausalLM", "partial", "sites | differ\nat x", []), ORDER)
    text = fm.replace_row(text, ("dd", "DdForCausalLM", "passes", "", ["mixture of experts", "q/k norms"]), ORDER)
    text = fm.replace_counts(text, ORDER)
    lines = text.splitlines()
    rows = [ln for ln in lines if ln.startswith("| `")]
    assert rows == ["| `aa` | AaForCausalLM | passes | - |",
                    "| `cc` | CcForCausalLM | partial | sites / differ at x |",
                    "| `dd` | DdForCausalLM | passes | mixture of experts, q/k norms |",
                    "| `ee` | EeForCausalLM | passes | tied embeddings |"]
    assert "3 pass, 1 partly, 0 fail, 0 could not be built from their config class alone; not reached: bb." in lines
    assert fm.parse_rows(text) == {"aa": "passes", "cc": "partial", "dd": "passes", "ee": "passes"}
    # a family before every existing row goes first; the header note accumulates the rerun families
    first = fm.replace_row(TABLE, ("a0", "A0", "fails", "x", []), ["a0"] + ORDER)
    assert [ln for ln in first.splitlines() if ln.startswith("| `")][0].startswith("| `a0`")
    note = fm.updated_header(lines[2], ["dd", "cc"])
    assert note.startswith("Written by the tool. Rows rerun with `--update` (last on ") and note.endswith(": aa, cc, dd.")
    assert note.count("Rows rerun") == 1
