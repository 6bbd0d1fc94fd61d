"""Comparisons across models: depth fractions, pairwise Spearman recomputed, side-by-side tables, plots."""

import math

import numpy as np
import pytest

from workbench.comparison import LayerCurves, ModelTable, depth_fraction, rank_agreement
from workbench.results import plots_for
from workbench.stats import Estimate, bootstrap, spearman


def _e(v: float) -> Estimate:
    return Estimate(v, v - 0.1, v + 0.1, n=10, method="test")


def test_layer_curves_put_models_of_different_depth_on_one_axis():
    res = LayerCurves("AUROC", {"a": [(0, _e(0.5)), (1, _e(0.9))], "b": [(0, _e(0.6)), (15, _e(0.7)), (29, _e(0.8))]},
                      {"a": 2, "b": 30}, reference=0.5)
    df = res.to_dataframe()
    assert list(df.depth) == [0.0, 1.0, 0.0, 15 / 29, 1.0]
    assert depth_fraction(0, 1) == 0.0 and res.best("b")[0] == 29
    assert "a: best 0.900" in res.summary() and "layer 29 of 30" in res.summary()
    assert set(plots_for(res)) == {"plot"}
    plots_for(res)["plot"](res)


def test_rank_agreement_is_spearman_between_every_pair_over_common_units():
    rng = np.random.default_rng(0)
    units = [f"p{i}" for i in range(6)]
    scores = {m: dict(zip(units, rng.normal(size=6))) for m in ("a", "b", "c")}
    scores["c"]["p0"] = math.nan  # not scored: left out of c's pairs
    res = rank_agreement("persona", {"by prompt": scores}, seed=0, n_resamples=200)
    df = res.to_dataframe()
    assert [(r.model_a, r.model_b) for r in df.itertuples()] == [("a", "b"), ("a", "c"), ("b", "c")]
    common = units[1:]
    e = spearman([scores["a"][u] for u in common], [scores["c"][u] for u in common], seed=0, n_resamples=200)
    row = df[(df.model_a == "a") & (df.model_b == "c")].iloc[0]
    assert (row.n, row.rho, row.ci_low, row.ci_high) == (5, pytest.approx(e.value), pytest.approx(e.ci_low),
                                                         pytest.approx(e.ci_high))
    ranks = res.ranking_table()
    a = ranks[ranks.model == "a"].set_index("persona")
    assert a.loc[max(units, key=lambda u: scores["a"][u]), "rank"] == 1
    assert math.isnan(ranks[(ranks.model == "c") & (ranks.persona == "p0")]["rank"].iloc[0])
    plots_for(res)["plot"](res)


def test_rank_agreement_says_why_a_pair_has_no_rho():
    res = rank_agreement("persona", {"m": {"a": {"x": 1.0, "y": 2.0}, "b": {"x": 1.0, "y": 3.0}}})
    (a, b, e, note), = res.pairs["m"]
    assert e is None and "2 personas scored by both models; Spearman needs 3" in note
    assert "n/a" in res.summary()
    plots_for(res)["plot"](res)


def test_model_table_expands_estimates_with_their_intervals():
    est = bootstrap(np.arange(10.0), seed=0)
    res = ModelTable("t", {"a": {"drop": est, "verdict": "agree"}, "b": {"verdict": "skipped: why"}})
    df = res.to_dataframe()
    assert list(df.columns) == ["model", "drop", "drop_ci_low", "drop_ci_high", "verdict"]
    assert df.drop_ci_low[0] == est.ci_low and math.isnan(df["drop"][1])
    assert "a: drop 4.50" in res.summary()
    plots_for(res)["plot"](res)
