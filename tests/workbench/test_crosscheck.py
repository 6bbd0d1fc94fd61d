"""CrossCheck verdicts on planted relations, its tables, and its plot."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats as ss
from sklearn.metrics import cohen_kappa_score

from workbench.crosscheck import CrossCheck
from workbench.plots import VERDICT_COLOURS, plot_crosscheck, plot_estimates
from workbench.results import Provenance, data_hash
from workbench.stats import StatsError, spearman

FAST = dict(n_resamples=500, n_permutations=2000)


def planted(n: int, slope: float, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, slope * np.tanh(x) + noise * rng.normal(size=n)


def test_planted_agreement_agrees_and_matches_references():
    x, y = planted(40, 1.0, 0.3)
    units = [f"layer{i}" for i in range(40)]
    cc = CrossCheck.from_measurements(
        units, x, y, internal_name="projection", behavioural_name="refusal_rate", unit_name="layer",
        threshold_internal=0.0, threshold_behavioural=0.0, **FAST,
    )
    assert cc.verdict == "agree" and cc.agrees
    assert "expected positive sign" in cc.reason
    assert cc.correlation.value == pytest.approx(ss.spearmanr(x, y).statistic, abs=1e-12)
    assert cc.correlation.ci_low > 0 and cc.correlation.p_value < 0.05
    assert cc.kappa.value == pytest.approx(cohen_kappa_score(x >= 0, y >= 0), abs=1e-12)
    assert cc.n == 40 and cc.units[3] == "layer3"


def test_planted_anticorrelation_disagrees_unless_expected():
    x, y = planted(40, -1.0, 0.3)
    cc = CrossCheck.from_measurements(range(40), x, y, threshold_internal=0.0, threshold_behavioural=0.0, **FAST)
    assert cc.verdict == "disagree" and cc.reason.startswith("opposite sign")
    assert cc.kappa.value < 0  # binarised measurements disagree too
    flipped = CrossCheck.from_measurements(
        range(40), x, y, expected_sign=-1, threshold_internal=0.0, threshold_behavioural=0.0, **FAST
    )
    assert flipped.verdict == "agree" and "expected negative sign" in flipped.reason
    # kappa is oriented so that positive means agreement in the expected direction
    assert flipped.kappa.value == pytest.approx(cohen_kappa_score(x >= 0, y < 0), abs=1e-12)


def test_independent_noise_many_units_is_negligible_disagreement():
    rng = np.random.default_rng(5)
    n = 1500
    cc = CrossCheck.from_measurements(range(n), rng.normal(size=n), rng.normal(size=n), **FAST)
    c = cc.correlation
    assert -0.1 < c.ci_low and c.ci_high < 0.1
    assert cc.verdict == "disagree" and cc.reason.startswith("negligible association")
    # Switching the null band off leaves the same data inconclusive (CI contains 0).
    off = CrossCheck.from_measurements(range(n), cc.internal, cc.behavioural, null_band=0.0, **FAST)
    assert off.verdict == "inconclusive" and "includes 0" in off.reason


def test_independent_noise_few_units_is_inconclusive():
    rng = np.random.default_rng(6)
    cc = CrossCheck.from_measurements(range(25), rng.normal(size=25), rng.normal(size=25), **FAST)
    assert cc.correlation.contains(0.0)
    assert cc.verdict == "inconclusive" and "more units needed" in cc.reason


def test_too_few_units_is_inconclusive_even_when_perfect():
    x = np.arange(6.0)
    cc = CrossCheck.from_measurements(list("abcdef"), x, 2 * x + 1, **FAST)
    assert cc.verdict == "inconclusive" and cc.correlation is None
    assert "only 6 units" in cc.reason and "min_units=10" in cc.reason
    # Lowering min_units deliberately: 6 perfectly monotone units pass (exact p = 2/720).
    low = CrossCheck.from_measurements(list("abcdef"), x, 2 * x + 1, min_units=5, **FAST)
    assert low.verdict == "agree" and low.correlation.p_value == pytest.approx(2 / 720)
    # 4 units: the bootstrap CI is [1, 1] but the exact permutation p = 2/24 > 0.05.
    four = CrossCheck.from_measurements(list("abcd"), x[:4], x[:4], min_units=3, **FAST)
    assert four.correlation.ci_low == 1.0
    assert four.verdict == "inconclusive" and "permutation p >= 0.05" in four.reason


def test_constant_measurement_is_inconclusive_and_named():
    cc = CrossCheck.from_measurements(
        range(12), np.arange(12.0), np.zeros(12), internal_name="probe", behavioural_name="asr", **FAST
    )
    assert cc.verdict == "inconclusive" and cc.correlation is None
    assert "asr is constant" in cc.reason


def test_kendall_method_and_binary_measurements_give_kappa_without_thresholds():
    rng = np.random.default_rng(7)
    internal = rng.integers(0, 2, 60)
    behaviour = np.where(rng.random(60) < 0.85, internal, 1 - internal)
    cc = CrossCheck.from_measurements(range(60), internal, behaviour, method="kendall", **FAST)
    assert cc.correlation.value == pytest.approx(ss.kendalltau(internal, behaviour).statistic, abs=1e-12)
    assert cc.kappa.value == pytest.approx(cohen_kappa_score(internal, behaviour), abs=1e-12)
    assert cc.verdict == "agree" and cc.method_label == "Kendall tau-b"
    one = CrossCheck.from_measurements(range(60), rng.normal(size=60), behaviour, threshold_behavioural=0.5, **FAST)
    assert one.kappa is None and "kappa not computed" in one.notes[0]


def test_input_validation():
    with pytest.raises(StatsError, match="units must be unique.*'p1'"):
        CrossCheck.from_measurements(["p0", "p1", "p1"], [1, 2, 3], [1, 2, 3])
    with pytest.raises(StatsError, match="mismatched lengths"):
        CrossCheck.from_measurements(range(3), [1, 2, 3], [1, 2])
    with pytest.raises(StatsError, match="NaN"):
        CrossCheck.from_measurements(range(3), [1, np.nan, 3], [1, 2, 3])
    with pytest.raises(StatsError, match="must differ"):
        CrossCheck.from_measurements(range(3), [1, 2, 3], [1, 2, 3], internal_name="x", behavioural_name="x")
    with pytest.raises(StatsError, match="expected_sign"):
        CrossCheck.from_measurements(range(3), [1, 2, 3], [1, 2, 3], expected_sign=0)
    with pytest.raises(StatsError, match="method must be one of"):
        CrossCheck.from_measurements(range(3), [1, 2, 3], [1, 2, 3], method="pearson")


def test_from_mappings_aligns_by_key_and_reports_missing_units():
    x, y = planted(20, 1.0, 0.2, seed=3)
    internal = {f"persona{i}": v for i, v in enumerate(x)}
    behavioural = {f"persona{i}": v for i, v in reversed(list(enumerate(y)))}  # other order
    cc = CrossCheck.from_mappings(internal, behavioural, unit_name="persona", **FAST)
    direct = CrossCheck.from_measurements(list(internal), x, y, unit_name="persona", **FAST)
    assert cc.correlation == direct.correlation
    del behavioural["persona4"]
    behavioural["ghost"] = 0.0
    with pytest.raises(StatsError, match=r"1 only in internal \(e.g. \['persona4'\]\), 1 only in behavioural"):
        CrossCheck.from_mappings(internal, behavioural)


def test_tables_summary_provenance_and_determinism():
    x, y = planted(15, 1.0, 0.3, seed=8)
    units = [f"u{i}" for i in range(15)]
    cc = CrossCheck.from_measurements(units, x, y, internal_name="probe", behavioural_name="judge", **FAST)
    df = cc.to_dataframe()
    assert list(df.columns) == ["unit", "probe", "judge", "probe_rank", "judge_rank"]
    assert len(df) == 15 and df["unit"].tolist() == units
    np.testing.assert_array_equal(df["judge_rank"], ss.rankdata(y))
    s = cc.summary()
    c = cc.correlation
    assert s.startswith(f"{cc.verdict.upper()}: probe vs judge over 15 units: Spearman rho = {c.value:.2f}")
    d = cc.to_dict()
    json.dumps(d)
    assert d["verdict"] == cc.verdict and d["correlation"]["p_value"] == c.p_value and len(d["internal"]) == 15
    assert cc.provenance.data_hash == data_hash(units, x, y) and cc.provenance.seed == 0
    given = Provenance(model="smollm2", data_hash="abc", seed=42)
    kept = CrossCheck.from_measurements(units, x, y, provenance=given, seed=1, **FAST)
    assert kept.provenance.data_hash == "abc" and kept.provenance.seed == 42 and kept.seed == 1
    again = CrossCheck.from_measurements(units, x, y, internal_name="probe", behavioural_name="judge", **FAST)
    assert again.correlation == cc.correlation
    assert cc.correlation == spearman(x, y, **FAST, seed=0)
    with pytest.raises(ValueError):
        cc.internal[0] = 1.0  # read-only


def test_plot_crosscheck_renders_png_with_verdict_colour():
    import matplotlib

    matplotlib.use("Agg")
    x, y = planted(12, 1.0, 0.2, seed=9)
    cc = CrossCheck.from_measurements([f"L{i}" for i in range(12)], x, y, threshold_internal=0.0,
                                      threshold_behavioural=0.0, **FAST)
    fig = plot_crosscheck(cc)
    ax = fig.axes[0]
    assert ax.get_title().startswith(cc.verdict.upper())
    assert "\u03c1 = " in ax.get_title() and "p = " in ax.get_title()
    assert matplotlib.colors.to_hex(ax.title.get_color()) == VERDICT_COLOURS[cc.verdict]
    assert len(ax.texts) >= 12  # unit labels + reason
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    # Into a caller's axes; an inconclusive check without correlation still plots.
    from matplotlib.figure import Figure

    host = Figure()
    axes = host.subplots(1, 2)
    few = CrossCheck.from_measurements(range(4), x[:4], y[:4], **FAST)
    assert plot_crosscheck(few, ax=axes[1]) is host
    assert "not computed" in axes[1].get_title()
    host.savefig(io.BytesIO(), format="png")


def test_plot_estimates_renders_error_bars():
    from workbench.stats import Estimate

    ests = [Estimate(v, v - 0.1, v + 0.2, n=10, method="bootstrap", statistic="auroc") for v in (0.5, 0.6, 0.9)]
    fig = plot_estimates(["L0", "L1", "L2"], ests, reference=0.5, title="AUROC by layer")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["L0", "L1", "L2"]
    assert ax.get_ylabel() == "auroc (95% CI)"
    fig.savefig(io.BytesIO(), format="png")
    num = plot_estimates([-2, 0, 2], ests, horizontal=True, label="persona A")
    assert num.axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="differ in length"):
        plot_estimates(["a"], ests)


def test_import_has_no_side_effects():
    code = (
        "import sys, workbench.stats, workbench.crosscheck, workbench.plots, workbench.scorers;"
        "heavy = [m for m in ('matplotlib', 'pandas', 'scipy', 'sklearn', 'torch') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))


def test_heavily_tied_measurement_is_inconclusive_not_an_error():
    # 12 units, the internal measurement takes one value at 10 of them: more than 5% of bootstrap
    # resamples are constant, so the interval is undefined; the verdict says so instead of raising.
    x = np.array([5.0] * 10 + [1.0, 2.0])
    y = np.arange(12, dtype=float)
    with pytest.raises(StatsError, match="undefined statistic"):
        spearman(x, y, seed=0)
    cc = CrossCheck.from_measurements(range(12), x, y, seed=0)
    assert cc.verdict == "inconclusive" and cc.correlation is None
    assert "interval undefined" in cc.reason and "undefined statistic" in cc.reason
