"""Every import of a project module names a module and an attribute that exist, including imports inside functions
(which importing the module does not run: a moved module otherwise fails only when the function is called).
`make lint` runs it; exit status 1 lists the broken imports."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("workbench", "circuits", "probe", "steering", "experiments", "tests")
SCANNED = PROJECT + ("benchmarks", "tools")


def _target(node: ast.ImportFrom, f: Path) -> str | None:
    if not node.level:
        return node.module
    pkg = list(f.relative_to(ROOT).parent.parts)
    if node.level > 1:
        pkg = pkg[: -(node.level - 1)]
    return ".".join(pkg + ([node.module] if node.module else []))


def broken_imports() -> list[str]:
    bad = []
    for f in sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _target(node, f)
            if not target or target.split(".")[0] not in PROJECT:
                continue
            where = f"{f.relative_to(ROOT)}:{node.lineno}"
            try:
                mod = importlib.import_module(target)
            except Exception as e:  # noqa: BLE001 - reported
                bad.append(f"{where}: cannot import {target} ({type(e).__name__}: {e})")
                continue
            for alias in node.names:
                if alias.name == "*" or hasattr(mod, alias.name):
                    continue
                try:
                    importlib.import_module(f"{target}.{alias.name}")
                except Exception:  # noqa: BLE001
                    bad.append(f"{where}: {target} has no {alias.name}")
    return bad


def main() -> int:
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(ROOT))
    bad = broken_imports()
    for b in bad:
        print(b)
    print(f"check_imports: {len(bad)} broken import(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
