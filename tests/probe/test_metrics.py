import numpy as np
from sklearn.metrics import roc_auc_score

from probe.metrics import _IndexAUC, analytic_auroc_gaussian, auc_rows, auroc_estimate, mean_auroc_estimate


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
    np.testing.assert_allclose(_IndexAUC(s, y)(idx), ref, atol=1e-12)


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
