"""workbench.stats.mean_estimate / paired_difference / clustered AUROC against hand-computed references."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from workbench.stats import (
    Estimate,
    StatsError,
    auroc,
    bootstrap,
    delong_placements,
    delong_variance,
    mean_estimate,
    normal_estimate,
    paired_difference,
)


def test_bootstrap_mean_is_the_bootstrap_of_np_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    g = np.repeat(np.arange(10), 4)
    for groups in (None, g):
        ref = bootstrap(x, np.mean, groups=groups, seed=3, n_resamples=500)
        est = mean_estimate(x, groups, seed=3, n_resamples=500)
        assert (est.value, est.ci_low, est.ci_high, est.stderr, est.n) == (ref.value, ref.ci_low, ref.ci_high,
                                                                           ref.stderr, ref.n)
    assert mean_estimate(x, g).n == 10 and "cluster" in mean_estimate(x, g).method


def test_no_spread_gives_the_degenerate_interval_and_one_cluster_with_spread_is_an_error():
    e = mean_estimate([2.5, 2.5, 2.5], groups=[0, 0, 1])
    assert (e.value, e.ci_low, e.ci_high, e.n) == (2.5, 2.5, 2.5, 2) and e.method.startswith("exact")
    one = mean_estimate([7.0])
    assert one.value == one.ci_low == one.ci_high == 7.0 and one.n == 1
    with pytest.raises(StatsError, match="at least 2 clusters"):
        mean_estimate([1.0, 2.0, 3.0], groups=[0, 0, 0])
    with pytest.raises(StatsError, match="no values"):
        mean_estimate([])
    with pytest.raises(StatsError, match="NaN"):
        mean_estimate([1.0, float("nan")])


def test_normal_mean_plain_and_cluster_robust_equal_the_hand_formulas():
    x = np.array([1.0, 2.0, 4.0, 7.0, 11.0, 16.0])
    z = 1.959963984540054
    e = mean_estimate(x, ci="normal", null=0.0)
    se = x.std(ddof=1) / math.sqrt(6)
    assert e.value == pytest.approx(41 / 6) and e.stderr == pytest.approx(se)
    assert e.ci_low == pytest.approx(41 / 6 - z * se) and e.ci_high == pytest.approx(41 / 6 + z * se)
    assert e.p_value == pytest.approx(math.erfc(abs(41 / 6) / se / math.sqrt(2)))
    # clusters {0,1}, {2,3,4}, {5}: var = G/(G-1) * sum_g (T_g - m n_g)^2 / n^2
    g = [0, 0, 1, 1, 1, 2]
    m = 41 / 6
    terms = [(3.0 - 2 * m) ** 2, (22.0 - 3 * m) ** 2, (16.0 - m) ** 2]
    var = 3 / 2 * sum(terms) / 36
    c = mean_estimate(x, g, ci="normal", bounds=(0.0, 10.0))
    assert c.stderr == pytest.approx(math.sqrt(var)) and c.n == 3 and c.method == "normal (cluster-robust)"
    assert c.ci_low == pytest.approx(max(0.0, m - z * math.sqrt(var))) and c.ci_high == min(10.0, m + z * math.sqrt(var))
    # singleton clusters are independent items
    s = mean_estimate(x, np.arange(6), ci="normal")
    assert s.stderr == pytest.approx(se) and s.method == "normal"


def test_normal_estimate_clips_and_tests_the_null():
    e = normal_estimate(0.95, 0.0025, n=30, bounds=(0.0, 1.0), null=0.5, statistic="auroc")
    assert e.ci_high == 1.0 and e.ci_low == pytest.approx(0.95 - 1.959963984540054 * 0.05)
    assert e.p_value == pytest.approx(math.erfc(9 / math.sqrt(2))) and isinstance(e, Estimate)
    assert normal_estimate(1.0, 0.0, n=3, null=0.0).p_value is None


def test_paired_difference_drops_nan_pairs_and_says_so():
    a = np.array([1.0, np.nan, 3.0, 5.0])
    b = np.array([0.0, 1.0, 1.0, np.nan])
    e = paired_difference(a, b)
    assert e.value == pytest.approx(1.5) and e.n == 2 and any("2 of 4 pairs" in n for n in e.notes)
    n = paired_difference([1.0, 2.0, 4.0], [0.0, 0.0, 1.0], ci="normal")
    ref = mean_estimate([1.0, 2.0, 3.0], ci="normal", null=0.0, statistic="mean_difference")
    assert (n.value, n.ci_low, n.ci_high, n.p_value) == (ref.value, ref.ci_low, ref.ci_high, ref.p_value)
    with pytest.raises(StatsError, match="equal length"):
        paired_difference([1.0, 2.0], [1.0])


def _auc_data(seed=0, G=30, per=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), per)
    y = (np.arange(G * per) % 2).astype(int)
    topic = rng.normal(size=G)[g]  # a shared cluster effect: correlated examples
    s = topic + 0.8 * y + rng.normal(size=G * per) * 0.7
    return s, y, g


def test_clustered_delong_variance_equals_obuchowski_by_hand():
    s, y, g = _auc_data(G=8, per=3)
    v10, v01, a = delong_placements(s, y)
    # Obuchowski (1997): per cluster, the sums of placements of its positives and negatives
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n1, n0, G = pos.size, neg.size, 8
    V1 = np.array([sum(v10[list(pos).index(i)] for i in pos if g[i] == k) for k in range(G)])
    V0 = np.array([sum(v01[list(neg).index(i)] for i in neg if g[i] == k) for k in range(G)])
    m = np.array([np.sum((g == k) & (y == 1)) for k in range(G)])
    k_ = np.array([np.sum((g == k) & (y == 0)) for k in range(G)])
    S10 = G / ((G - 1) * n1) * np.sum((V1 - m * a) ** 2)
    S01 = G / ((G - 1) * n0) * np.sum((V0 - k_ * a) ** 2)
    S11 = G / (G - 1) * np.sum((V1 - m * a) * (V0 - k_ * a))
    ref = S10 / n1 + S01 / n0 + 2 * S11 / (n1 * n0)
    assert float(delong_variance(v10, v01, a, y, g)) == pytest.approx(ref, rel=1e-12)
    est = auroc(s, y, groups=g, ci_method="delong")
    assert est.stderr == pytest.approx(math.sqrt(ref)) and est.n == G and "Obuchowski" in est.method
    assert est.value == pytest.approx(roc_auc_score(y, s))


def test_clustered_auroc_bootstrap_resamples_clusters_like_a_hand_loop():
    s, y, g = _auc_data(G=12, per=2)
    est = auroc(s, y, groups=g, n_resamples=200, seed=5)
    rng = np.random.default_rng(5)
    draws = rng.integers(0, 12, (200, 12))  # the bootstrap's cluster draw (same as scipy's)
    members = [np.flatnonzero(g == k) for k in range(12)]
    vals = []
    for row in draws:
        idx = np.concatenate([members[k] for k in row])
        vals.append(roc_auc_score(y[idx], s[idx]) if len(set(y[idx])) == 2 else np.nan)
    vals = np.array(vals)
    vals = vals[np.isfinite(vals)]
    lo, hi = np.quantile(vals, [0.025, 0.975])
    assert est.ci_low == pytest.approx(lo, abs=1e-12) and est.ci_high == pytest.approx(hi, abs=1e-12)
    assert est.method == "cluster bootstrap percentile" and est.n == 12


def test_auroc_groups_singletons_change_nothing_and_one_cluster_is_an_error():
    s, y, _ = _auc_data()
    plain = auroc(s, y, n_resamples=200)
    single = auroc(s, y, groups=np.arange(s.size), n_resamples=200)
    assert (plain.value, plain.ci_low, plain.ci_high, plain.stderr) == (single.value, single.ci_low, single.ci_high,
                                                                        single.stderr)
    with pytest.raises(StatsError, match="one cluster"):
        auroc(s, y, groups=np.zeros(s.size))
    # duplicating every example must not shrink the clustered interval the way it shrinks the naive one
    s2, y2, g2 = np.repeat(s, 2), np.repeat(y, 2), np.repeat(np.arange(s.size), 2)
    naive, clu = auroc(s2, y2, ci_method="delong"), auroc(s2, y2, groups=g2, ci_method="delong")
    assert clu.stderr > 1.3 * naive.stderr
