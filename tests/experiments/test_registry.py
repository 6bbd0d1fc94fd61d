"""The experiment registry loads every built-in module and does not hide a missing one."""

import pytest

import experiments.registry as R


def test_builtins_are_registered():
    names = {e.name for e in R.list_experiments()}
    assert {"smoke", "cross-check"} <= names


def test_a_missing_builtin_module_is_an_error(monkeypatch):
    reg = R.Registry("experiment", error=R.UnknownExperimentError, load=R._load_builtins)
    monkeypatch.setattr(R, "_BUILTINS", R._BUILTINS + ("no_such_study",))
    with pytest.raises(ModuleNotFoundError, match="experiments.builtin.no_such_study"):
        reg.names()
