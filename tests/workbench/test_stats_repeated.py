"""Paired sign-flip test, Friedman / Kendall's W and the chi-square tail: against scipy and hand values."""

import itertools

import numpy as np
import pytest
import scipy.stats as ss

from workbench.stats import StatsError, chi2_sf, friedman, paired_mean_difference


@pytest.mark.parametrize("x,df", [(0.5, 1), (3.2, 2), (10, 4), (50, 7), (0, 3), (1e-3, 5), (200, 30), (29.5, 30)])
def test_chi2_sf_equals_scipy(x, df):
    assert chi2_sf(x, df) == pytest.approx(ss.chi2.sf(x, df), rel=1e-9, abs=1e-300)


def test_paired_mean_difference_exact_sign_flip_equals_enumeration_and_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.4, 1, 10), rng.normal(0, 1, 10)
    e = paired_mean_difference(a, b)
    d = a - b
    brute = np.mean([abs(np.mean(np.array(s) * d)) >= abs(d.mean()) - 1e-12
                     for s in itertools.product([-1, 1], repeat=d.size)])
    assert e.p_value == pytest.approx(brute)
    ref = ss.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    assert e.p_value == pytest.approx(ref)
    assert e.value == pytest.approx(d.mean()) and e.ci_low < e.value < e.ci_high
    assert "exact sign-flip" in e.notes[-1]


def test_paired_mean_difference_monte_carlo_and_constant_and_errors():
    rng = np.random.default_rng(2)
    d = rng.normal(1.0, 1, 40)
    e = paired_mean_difference(d, n_permutations=2000)
    assert e.p_value == pytest.approx(1 / 2001)  # nothing beats a mean ~6 standard errors out
    assert "add-one" in e.notes[-1]
    null = paired_mean_difference(rng.normal(0, 1, 40), n_permutations=2000, seed=3)
    assert null.p_value > 0.01
    c = paired_mean_difference(np.full(5, 0.5))
    assert c.value == 0.5 and c.p_value == pytest.approx(2 / 32)
    assert paired_mean_difference(np.zeros(5)).p_value == 1.0
    with pytest.raises(StatsError, match="values"):
        paired_mean_difference([1.0, 2.0], [1.0])
    with pytest.raises(StatsError, match="at least 2"):
        paired_mean_difference([1.0])


def test_friedman_equals_scipy_with_ties_and_w_in_range():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 5, (25, 3)).astype(float)
    x[:, 1] += 0.8
    e = friedman(x, seed=0)
    ref = ss.friedmanchisquare(*x.T)
    q = float(e.notes[0].split("Q = ")[1].split(" ")[0])
    assert q == pytest.approx(ref.statistic, rel=1e-3)
    assert f"{ref.pvalue:.3g}" in e.notes[0]
    assert e.value == pytest.approx(ref.statistic / (25 * 2))
    assert 0 <= e.ci_low <= e.value <= e.ci_high <= 1
    # the permutation p agrees with the asymptotic one roughly, and a strong planted effect is detected
    assert abs(e.p_value - ref.pvalue) < 0.02
    strong = friedman(np.column_stack([np.arange(20.0), np.arange(20.0) + 1, np.arange(20.0) + 2]))
    assert strong.value == pytest.approx(1.0) and strong.p_value < 0.001


def test_friedman_null_and_errors():
    rng = np.random.default_rng(5)
    p = [friedman(rng.normal(size=(15, 3)), seed=s, n_permutations=500, n_resamples=200).p_value for s in range(40)]
    assert np.mean(np.array(p) < 0.05) <= 0.15 and min(p) > 0  # about 5% false positives under H0
    with pytest.raises(StatsError, match="constant"):
        friedman(np.ones((5, 3)))
    with pytest.raises(StatsError, match="2-D"):
        friedman(np.ones(5))
    with pytest.raises(StatsError, match="NaN"):
        friedman(np.array([[1.0, np.nan], [1.0, 2.0]]))
