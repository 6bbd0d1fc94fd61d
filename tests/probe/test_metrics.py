import numpy as np
from sklearn.metrics import roc_auc_score

from probe.metrics import analytic_auroc_gaussian, auc_rows, auroc_estimate, mean_auroc_estimate
from workbench.stats import IndexedAUROC


def test_auc_rows_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    s = np.round(rng.normal(size=(5, 80)), 1)
    y = rng.integers(0, 2, 80)
    np.testing.assert_allclose(auc_rows(s, y), [roc_auc_score(y, r) for r in s], atol=1e-12)


def test_index_auc_equals_resampled_sklearn():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=(2, 60)), 1)
    y = rng.integers(0, 2, 60)
    idx = rng.integers(0, 60, (5, 60))
    ref = [np.mean([roc_auc_score(y[i], r[i]) for r in s]) for i in idx]
    np.testing.assert_allclose(IndexedAUROC(s, y)(idx), ref, atol=1e-12)


def test_cluster_ci_is_wider_for_duplicated_pairs():
    rng = np.random.default_rng(2)
    s = rng.normal(size=100) + np.repeat([0, 1], 50) * 0.5
    y = np.repeat([0, 1], 50)
    s2, y2 = np.repeat(s, 2), np.repeat(y, 2)   # every example duplicated: clusters of 2
    iid = auroc_estimate(s2, y2)
    clu = auroc_estimate(s2, y2, groups=np.repeat(np.arange(100), 2))
    assert abs(iid.value - clu.value) < 1e-12
    assert clu.width > 1.25 * iid.width


def test_mean_auroc_of_null_scores_contains_half():
    rng = np.random.default_rng(3)
    est = mean_auroc_estimate(rng.normal(size=(5, 200)), rng.integers(0, 2, 200))
    assert est.contains(0.5)


def test_analytic_auroc():
    assert abs(analytic_auroc_gaussian(0.0) - 0.5) < 1e-12
    assert abs(analytic_auroc_gaussian(np.sqrt(2.0)) - 0.8413447) < 1e-6


def test_delong_matches_workbench_and_clustered_form_reduces_to_it():
    from workbench.stats import auroc

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + 0.8 * y
    ref = auroc(s, y, pos_label=1, ci_method="delong")
    est = auroc_estimate(s, y)
    assert abs(est.value - ref.value) < 1e-12 and abs(est.stderr - ref.stderr) < 1e-12
    # singleton clusters: Obuchowski's estimator is DeLong's up to the (G-1)/G vs (n-1) factors
    from workbench.stats import delong_placements
    from workbench.stats import delong_variance as _delong_variance

    v10, v01, a = delong_placements(s, y)
    clu = _delong_variance(v10, v01, a, y, np.arange(300))
    assert abs(np.sqrt(clu) / ref.stderr - 1) < 0.01


def test_clustered_delong_covers_like_the_cluster_bootstrap():
    """Pairs that share a random offset: the analytic clustered interval and the cluster
    bootstrap agree, and both are wider than the naive one."""
    rng = np.random.default_rng(5)
    n = 200
    off = np.repeat(rng.normal(size=n) * 1.5, 2)
    y = np.tile([0, 1], n)
    s = off + rng.normal(size=2 * n) + 0.7 * y
    g = np.repeat(np.arange(n), 2)
    naive = auroc_estimate(s, y)
    clu = auroc_estimate(s, y, g)
    boot = auroc_estimate(s, y, g, ci="bootstrap", n_resamples=1000)
    assert abs(clu.width / boot.width - 1) < 0.2
    assert clu.width < naive.width  # pairing removes the shared offset's variance from within-pair contrasts


def test_macro_auroc_analytic_agrees_with_bootstrap():
    from probe.metrics import macro_auroc_estimate

    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 300)
    P = rng.normal(size=(300, 3)) + np.eye(3)[y]
    a = macro_auroc_estimate(P, y)
    b = macro_auroc_estimate(P, y, ci="bootstrap", n_resamples=1000)
    assert abs(a.value - b.value) < 1e-12
    assert abs(a.width / b.width - 1) < 0.25


def test_perfect_separation_has_a_small_p_value():
    y = np.repeat([0, 1], 30)
    est = auroc_estimate(np.arange(60.0), y, np.repeat(np.arange(30), 2))
    assert est.value == 1.0 and est.p_value is not None and est.p_value < 1e-4


def test_one_cluster_falls_back_to_independent_examples_and_says_so():
    """A test split holding a single topic: a cluster-robust variance needs two clusters or more
    (it divided by G - 1 = 0 before). The interval is the unclustered one, with a note."""
    from probe.metrics import accuracy_estimate

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    s = rng.normal(size=60) + y
    one = auroc_estimate(s, y, np.zeros(60, int))
    plain = auroc_estimate(s, y)
    assert np.isfinite(one.ci_low) and (one.ci_low, one.ci_high) == (plain.ci_low, plain.ci_high)
    assert any("one cluster" in n for n in one.notes) and not any("one cluster" in n for n in plain.notes)
    boot = auroc_estimate(s, y, np.zeros(60, int), ci="bootstrap", n_resamples=300)
    assert np.isfinite(boot.ci_low) and any("one cluster" in n for n in boot.notes)
    acc = accuracy_estimate((s > 0.5) == y, np.zeros(60, int))
    assert acc.ci_high - acc.ci_low > 0.1 and any("one cluster" in n for n in acc.notes)
    two = auroc_estimate(s, y, np.arange(60) % 2)  # two clusters: clustered as before
    assert "clustered" in two.method
