"""The public API is importable from the package root, and importing it has no heavy side effects."""

import subprocess
import sys
from pathlib import Path

import steering

REPO = Path(__file__).resolve().parents[2]


def test_public_names_resolve():
    for name in steering.__all__:
        assert getattr(steering, name) is not None, name


def test_import_is_light_and_does_not_touch_other_packages():
    code = ("import sys, steering; heavy = [m for m in ('pandas', 'matplotlib', 'transformers', 'transformer_lens', "
            "'nnsight', 'circuits', 'probe', 'experiments') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dependency_rule():
    """steering imports workbench only, never circuits / probe / experiments."""
    for f in (REPO / "steering").rglob("*.py"):
        text = f.read_text()
        for pkg in ("circuits", "probe", "experiments"):
            assert f"from {pkg}" not in text and f"import {pkg}" not in text, (f, pkg)
