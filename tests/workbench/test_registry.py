"""workbench.registry.Registry: the one registry behind scorers, models and experiments."""

import pytest

from workbench.errors import WorkbenchError, did_you_mean
from workbench.registry import Registry, RegistryError, UnknownNameError


class UnknownThing(UnknownNameError):
    pass


def test_register_get_list_and_did_you_mean():
    r = Registry("thing", error=UnknownThing, footer="Or pass a path.")
    a, b = object(), object()
    r.register("alpha", a)
    assert r.decorator("beta")(b) is b
    assert r.get("alpha") is a and r.names() == ["alpha", "beta"] and r.values() == [a, b]
    assert "beta" in r and len(r) == 2 and list(r) == ["alpha", "beta"]
    with pytest.raises(UnknownThing) as e:
        r.get("alpah")
    assert str(e.value) == "unknown thing 'alpah'. Did you mean 'alpha'? Registered things: alpha, beta. Or pass a path."
    assert isinstance(e.value, KeyError) and isinstance(e.value, WorkbenchError)
    with pytest.raises(UnknownThing, match=r"^unknown thing 'zzz'\. Registered things"):
        r.get("zzz")


def test_duplicates_overwrite_and_bad_names():
    r = Registry("thing")
    a = object()
    r.register("a", a)
    r.register("a", a)  # the same object again (a module imported twice) is fine
    with pytest.raises(RegistryError, match="already registered"):
        r.register("a", object())
    b = object()
    assert r.register("a", b, overwrite=True) is b and r.get("a") is b
    for bad in ("", " a", None):
        with pytest.raises(RegistryError, match="non-empty"):
            r.register(bad, a)
        with pytest.raises(RegistryError, match="non-empty"):
            r.decorator(bad)
    assert r.pop("a") is b and r.pop("a", "gone") == "gone"
    assert isinstance(RegistryError("x"), ValueError)


def test_lazy_load_runs_once_on_first_read_and_failures_propagate():
    calls = []
    r = Registry("thing", load=lambda: (calls.append(1), r.register("built-in", 1)))
    r.register("mine", 2)
    assert calls == [] and r.find("built-in") is None  # registering and find() do not load
    assert r.names() == ["built-in", "mine"] and calls == [1]
    r.get("mine")
    assert calls == [1]

    def broken():
        raise ModuleNotFoundError("No module named 'plugins.gone'", name="plugins.gone")

    bad = Registry("thing", load=broken)
    with pytest.raises(ModuleNotFoundError, match="plugins.gone"):
        bad.names()
    with pytest.raises(ModuleNotFoundError):  # still not loaded: it fails again instead of looking empty
        bad.get("x")


def test_did_you_mean_text():
    assert did_you_mean("refusl", ["refusal", "asr"]) == " Did you mean 'refusal'?"
    assert did_you_mean("colour", ["color", "colours", "xyz"]) == " Did you mean 'colours' or 'color'?"  # best first
    three = did_you_mean("a", ["aa", "ab", "ac"], cutoff=0.5)
    assert three.startswith(" Did you mean '") and three.count("'") == 6 and ", " in three and " or " in three
    assert did_you_mean("nnsigh", ["tl", "nnsight"], n=1, inline=True) == "did you mean 'nnsight'?"
    assert did_you_mean("zzz", ["alpha"]) == ""
