"""Renamed public names (one meaning per name) still resolve, with a DeprecationWarning."""

import importlib

import pytest


@pytest.mark.parametrize("module, old, new", [
    ("steering", "ab_scores", "steered_ab_scores"),
    ("steering.scoring", "ab_scores", "steered_ab_scores"),
    ("probe", "load_caa", "load_caa_file"),
    ("probe.datasets", "load_caa", "load_caa_file"),
])
def test_old_name_warns_and_is_the_new_object(module, old, new):
    m = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{old} was renamed .*{new}"):
        got = getattr(m, old)
    assert got is getattr(m, new)
    assert old not in getattr(m, "__all__", ())
    with pytest.raises(AttributeError):
        _ = m.no_such_name_at_all
