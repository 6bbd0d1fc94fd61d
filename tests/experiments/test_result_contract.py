"""The result contract: plots registered per result type, and a run writing results and studies by it."""

import dataclasses
import importlib
import json

import numpy as np
import pandas as pd
import pytest

from experiments.study import StudyResult, skipped
from experiments.writer import StepWriter
from workbench.crosscheck import CrossCheck
from workbench.results import Provenance, plots_for, register_plot, registered_plots


@dataclasses.dataclass
class _Result:
    values: list
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def to_dataframe(self):
        return pd.DataFrame({"i": range(len(self.values)), "value": self.values})

    def summary(self) -> str:
        return f"{len(self.values)} values"


class _Sub(_Result):
    pass


def _figure(title):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().set_title(title)
    return fig


register_plot(_Result)(lambda r: _figure("plot"))
register_plot(f"{__name__}:_Result", "bars")(lambda r: _figure("bars"))


def test_plots_are_found_by_type_and_base_class():
    assert list(plots_for(_Result([1]))) == ["plot", "bars"]
    assert list(plots_for(_Sub([1]))) == ["plot", "bars"]      # inherited
    assert plots_for(object()) == {}
    with pytest.raises(ValueError, match="package.module:ClassName"):
        register_plot("NoModule")


def test_plots_for_imports_the_package_plots_module():
    """A circuits result finds its plots although nothing imported circuits.plots before (fresh interpreter)."""
    import subprocess
    import sys

    code = ("from circuits.heads import HeadScores; from workbench.results import plots_for; "
            "print(sorted(plots_for(HeadScores)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['duplicate_token', 'induction', 'previous_token']"


def test_every_registered_plot_names_a_result_class_that_follows_the_contract():
    for pkg in ("workbench", "circuits", "probe", "steering"):
        importlib.import_module(f"{pkg}.plots")
    keys = [k for k in registered_plots() if not k.startswith(__name__)]
    assert len(keys) >= 20
    for key in keys:
        mod, name = key.split(":")
        cls = getattr(importlib.import_module(mod), name)   # a typo in a registration fails here
        assert callable(getattr(cls, "to_dataframe", None)), key
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        assert "provenance" in fields or hasattr(cls, "provenance"), key


def test_writer_writes_a_result_by_the_contract(tmp_path):
    w = StepWriter(tmp_path, "s")
    r = _Result([0.5, 1.5])
    tables, figures = w.result("thing", r)
    assert tables == ["thing.csv"] and figures == ["thing.png", "thing_bars.png"]
    assert pd.read_csv(tmp_path / "thing.csv").equals(r.to_dataframe())
    assert (tmp_path / "thing_bars.pdf").exists()
    assert w.result("only", r, table=False, plots=["bars"]) == ([], ["only_bars.png"])
    with pytest.raises(ValueError, match=r"_Result has no plot 'pie'; registered: \['plot', 'bars'\]"):
        w.result("x", r, plots=["pie"])


def test_writer_writes_a_study_with_its_crosscheck(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    cc = CrossCheck.from_measurements([f"u{i}" for i in range(30)], x, x + 0.1 * rng.normal(size=30),
                                      internal_name="internal", behavioural_name="behaviour", seed=0)
    res = StudyResult("A study", "What it measures.", "demo", cc, results={"thing": _Result([1.0])},
                      plots={"thing": ["bars"]}, tables={"units": pd.DataFrame({"u": [1]})},
                      metrics={"m": 1.0}, notes=["a note"], payload={"extra": 2})
    w = StepWriter(tmp_path, "s")
    payload = w.study(res)
    assert payload == {"extra": 2, "verdict": cc.verdict, "correlation": cc.correlation.value} and cc.verdict == "agree"
    (sec,) = w.sections
    assert sec.title == "A study" and sec.summary == "What it measures." and sec.verdict == "agree"
    assert sec.verdict_detail == " " + cc.summary() and sec.notes[0] == "a note"
    assert sec.tables == ["thing.csv", "units.csv", "demo_crosscheck.csv"]
    assert sec.figures == ["thing_bars.png", "demo_crosscheck.png"]
    assert list(sec.metrics) == ["cross-check Spearman rho", "m"]
    assert json.loads((tmp_path / "demo_crosscheck.json").read_text())["verdict"] == "agree"
    assert pd.read_csv(tmp_path / "demo_crosscheck.csv").shape[0] == 30
    assert res.summary() == f"A study: {cc.summary()}" and res.provenance is cc.provenance


def test_a_skipped_study_says_why_and_has_no_verdict(tmp_path):
    res = skipped("Logit lens", "lens", "no answer is one token", notes=["dropped 24 facts"])
    w = StepWriter(tmp_path, "s")
    assert w.study(res) == {"skipped": "no answer is one token"}
    (sec,) = w.sections
    assert sec.verdict is None and sec.summary == "Skipped: no answer is one token."
    assert sec.notes == ["dropped 24 facts"]
    assert res.summary() == "Logit lens: no cross-check (no answer is one token)" and res.to_dataframe().empty
