"""Planted-direction tests: x = noise + y * s * u (Alain & Bengio 2016 probes must recover u).

For isotropic unit noise, a probe with unit direction ``w`` scores test examples with AUROC
Phi(s * (w . u) / sqrt(2)) in expectation (:func:`probe.metrics.analytic_auroc_gaussian`): the
test AUROC's interval must contain that value for the *learned* direction, and the learned
direction must be close to ``u`` (so its AUROC is close to the optimum Phi(s / sqrt(2))). With
``d`` dimensions and ``n`` training examples per class the mean-difference direction's cosine is
about ``1 / sqrt(1 + 2 d / (n s^2))``: 0.99 for the sizes below.
"""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from probe.metrics import analytic_auroc_gaussian, auroc_estimate
from probe.probes import fit_logistic, fit_mean_diff


def planted(n=4000, d=32, s=1.5, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + y[:, None] * s * u[None]
    return X, y, u


@pytest.mark.parametrize("fit", [fit_mean_diff, lambda X, y: fit_logistic(X, y, C=1.0)], ids=["mean_diff", "logistic"])
def test_planted_direction_recovered_and_auroc_matches_analytic(fit):
    s = 1.5
    X, y, u = planted(s=s)
    tr = np.arange(len(y)) < 2000
    probe = fit(X[tr], y[tr])
    cos = float(probe.direction @ u)
    assert cos > 0.97, cos
    est = auroc_estimate(probe.decision(X[~tr]), y[~tr], ci="bootstrap", n_resamples=2000)
    expected = analytic_auroc_gaussian(s, cosine=cos)
    assert est.contains(expected), (est, expected)
    assert analytic_auroc_gaussian(s) - expected < 0.01  # near the optimum
    # the interval is informative: a probe 45 degrees off u would be outside it
    assert not est.contains(analytic_auroc_gaussian(s, cosine=np.cos(np.radians(45))))


def test_logistic_matches_sklearn_and_cv_uses_groups():
    X, y, _ = planted(n=600, d=20, s=1.0, seed=1)
    p = fit_logistic(X, y, C=0.5)
    sc = StandardScaler().fit(X)
    m = LogisticRegression(C=0.5, class_weight="balanced", max_iter=2000).fit(sc.transform(X), y)
    np.testing.assert_allclose(p.decision(X), m.decision_function(sc.transform(X)), atol=1e-6)
    cv = fit_logistic(X, y, C="cv", groups=np.arange(600) // 3)
    assert cv.C in (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def test_wrong_width_error_names_probe():
    X, y, _ = planted(n=100, d=8)
    p = fit_mean_diff(X, y, layer=3)
    with pytest.raises(ValueError, match="width 9 but this probe .* expects width 8"):
        p.decision(np.zeros((2, 9)))


def test_mean_diff_needs_two_classes():
    with pytest.raises(ValueError, match="at least two classes"):
        fit_mean_diff(np.zeros((5, 3)), np.ones(5))
