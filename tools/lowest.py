"""Print pip constraints pinning the libraries the workbench reaches into to the lowest versions its
ranges allow (``make test-lowest``).

Only transformers, TransformerLens and nnsight are pinned low: they are where the workbench depends on
behaviour that changes between releases (the rest float to whatever pip resolves).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PINNED_LOW = ("transformers", "transformer-lens", "nnsight")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def main() -> None:
    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[[^\]]*\])?\s*(.*)$", dep)
        if not m or m.group(1).lower() not in PINNED_LOW:
            continue
        low = re.search(r">=\s*([0-9][^,;\s]*)", m.group(2))
        if low:
            print(f"{m.group(1)}=={low.group(1)}")


if __name__ == "__main__":
    main()
