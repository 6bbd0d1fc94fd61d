"""Doctests: every example (``>>>``) in the library's docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workbench", "circuits", "probe", "steering", "experiments")


def _modules_with_examples():
    out = []
    for pkg in PACKAGES:
        for info in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"{pkg}."):
            path = ROOT / Path(*info.name.split("."))
            src = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
            if src.is_file() and ">>> " in src.read_text():
                out.append(info.name)
    return out


MODULES = _modules_with_examples()


def test_examples_exist():
    assert MODULES, "no docstring examples found: the collector is broken"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples in {name} failed (run python -m doctest -v)"
    assert res.attempted > 0
