"""workbench.stats against scipy / scikit-learn / hand-computed references."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.stats as ss
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from workbench import stats as S
from workbench.stats import Estimate, StatsError


def tied(rng: np.random.Generator, n: int, levels: int) -> np.ndarray:
    return rng.integers(0, levels, n).astype(float)


# --------------------------------------------------------------------------------------------
# Estimate
# --------------------------------------------------------------------------------------------


def test_estimate_str_excludes_and_roundtrip():
    e = Estimate(0.62, 0.51, 0.72, n=50, method="bootstrap", seed=0)
    assert str(e) == "0.62 [0.51, 0.72] (95% bootstrap, n=50)"
    assert e.excludes(0.0) and e.excludes(0.8) and not e.excludes(0.51) and not e.excludes(0.6)
    assert e.contains(0.72)
    e2 = Estimate(0.3, 0.1, 0.5, confidence=0.9, n=12, method="wilson", p_value=0.0123)
    assert str(e2) == "0.30 [0.10, 0.50] (90% wilson, n=12, p=0.012)"
    d = e2.to_dict()
    assert d["p_value"] == pytest.approx(0.0123) and d["seed"] is None
    assert Estimate.from_dict(d) == e2


def test_estimate_rejects_nan_and_reversed_interval():
    with pytest.raises(StatsError, match="NaN"):
        Estimate(float("nan"), 0, 1, n=3, method="x")
    with pytest.raises(StatsError, match="reversed"):
        Estimate(0.5, 0.7, 0.6, n=3, method="x")
    with pytest.raises(StatsError, match="confidence"):
        Estimate(0.5, 0.4, 0.6, confidence=95, n=3, method="x")


# --------------------------------------------------------------------------------------------
# Ranks
# --------------------------------------------------------------------------------------------


def test_rankdata_matches_scipy_average_with_ties_rowwise():
    rng = np.random.default_rng(0)
    a = tied(rng, 300, 7).reshape(20, 15)
    np.testing.assert_array_equal(S._rankdata(a), ss.rankdata(a, axis=1))
    v = np.array([3.0, -np.inf, 3.0, np.inf, 1.0, 3.0])
    np.testing.assert_array_equal(S._rankdata(v), ss.rankdata(v))


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_equals_scipy_one_sample(method):
    x = np.random.default_rng(1).lognormal(size=40)
    ours = S.bootstrap(x, np.mean, n_resamples=1500, seed=7, method=method)
    ref = ss.bootstrap((x,), np.mean, n_resamples=1500, method=method, rng=np.random.default_rng(7))
    assert ours.value == pytest.approx(x.mean(), rel=1e-14)
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, rel=1e-10)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, rel=1e-10)
    assert ours.stderr == pytest.approx(ref.standard_error, rel=1e-10)
    assert ours.method == ("bootstrap BCa" if method == "bca" else "bootstrap percentile")
    assert ours.seed == 7 and ours.n == 40


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_bootstrap_equals_scipy_paired(method):
    rng = np.random.default_rng(2)
    a = rng.normal(size=30)
    b = 0.5 * a + rng.normal(size=30)

    def mean_diff(u, v, axis=-1):
        return np.mean(u - v, axis=axis)

    ours = S.bootstrap((a, b), mean_diff, n_resamples=1000, seed=3, method=method, vectorized=True)
    ref = ss.bootstrap((a, b), mean_diff, paired=True, n_resamples=1000, method=method,
                       rng=np.random.default_rng(3))
    assert (ours.ci_low, ours.ci_high) == pytest.approx(tuple(ref.confidence_interval), rel=1e-10)
    # A non-vectorised statistic gives the same resamples and so the same interval.
    loop = S.bootstrap((a, b), lambda u, v: float(np.mean(u - v)), n_resamples=1000, seed=3, method=method)
    assert (loop.ci_low, loop.ci_high) == pytest.approx((ours.ci_low, ours.ci_high), rel=1e-12)


def test_bootstrap_deterministic_given_seed_and_seed_none_recorded():
    x = np.random.default_rng(3).normal(size=25)
    assert S.bootstrap(x, seed=11) == S.bootstrap(x, seed=11)
    assert S.bootstrap(x, seed=11).ci_low != S.bootstrap(x, seed=12).ci_low
    e = S.bootstrap(x, seed=None, n_resamples=200)
    assert isinstance(e.seed, int)
    again = S.bootstrap(x, seed=e.seed, n_resamples=200)
    assert (again.ci_low, again.ci_high) == (e.ci_low, e.ci_high)


def test_cluster_bootstrap_equals_reference_implementation_unequal_sizes():
    rng = np.random.default_rng(4)
    sizes = rng.integers(1, 6, 15)
    groups = np.repeat([f"p{i}" for i in range(15)], sizes)
    values = rng.normal(size=groups.size) + np.repeat(rng.normal(size=15), sizes)
    ours = S.bootstrap(values, np.mean, groups=groups, n_resamples=800, seed=5)
    # Reference: resample the 15 prompts with replacement, pool their generations.
    members = [np.flatnonzero(groups == f"p{i}") for i in range(15)]
    draws = np.random.default_rng(5).integers(0, 15, (800, 15))
    boot = [values[np.concatenate([members[j] for j in row])].mean() for row in draws]
    assert ours.ci_low == pytest.approx(np.quantile(boot, 0.025), rel=1e-12)
    assert ours.ci_high == pytest.approx(np.quantile(boot, 0.975), rel=1e-12)
    assert ours.n == 15 and ours.method == "cluster bootstrap percentile"
    assert any("15 clusters" in n for n in ours.notes)


def test_cluster_bootstrap_widens_interval_for_correlated_generations():
    rng = np.random.default_rng(6)
    prompt_effect = rng.normal(size=20)
    values = np.repeat(prompt_effect, 10) + 0.2 * rng.normal(size=200)
    groups = np.repeat(np.arange(20), 10)
    naive = S.bootstrap(values, n_resamples=1000, seed=0)
    clustered = S.bootstrap(values, n_resamples=1000, seed=0, groups=groups)
    assert clustered.value == naive.value
    assert clustered.width > 2.5 * naive.width  # design effect ~ sqrt(1 + 9 * ICC) ~ 3
    # Singleton clusters reproduce the plain bootstrap exactly (same draws).
    single = S.bootstrap(values, n_resamples=1000, seed=0, groups=np.arange(200))
    assert (single.ci_low, single.ci_high) == (naive.ci_low, naive.ci_high)


def test_bootstrap_percentile_coverage_normal_mean():
    """95% percentile CIs of a normal mean (n=40) cover the truth in ~95% of 200 datasets."""
    rng = np.random.default_rng(2024)
    covered = 0
    for sim in range(200):
        x = rng.normal(loc=1.0, scale=2.0, size=40)
        covered += S.bootstrap(x, n_resamples=1000, seed=sim).contains(1.0)
    # Percentile intervals undercover slightly at n=40 (~93-94%); binomial SD over 200 ~1.6%.
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_errors_are_clear():
    with pytest.raises(StatsError, match="at least 2 units; got 1"):
        S.bootstrap([1.0])
    with pytest.raises(StatsError, match="NaN"):
        S.bootstrap([1.0, np.nan, 2.0])
    with pytest.raises(StatsError, match="one value per unit"):
        S.bootstrap(([1.0, 2.0, 3.0], [1.0, 2.0]), lambda a, b: 0.0)
    with pytest.raises(StatsError, match="percentile' or 'bca"):
        S.bootstrap([1.0, 2.0, 3.0], method="basic")
    with pytest.raises(StatsError, match="scalar"):
        S.bootstrap([1.0, 2.0, 3.0], lambda a: a)
    with pytest.raises(StatsError, match="BCa interval undefined.*outside the whole bootstrap"):
        # the number of distinct values is maximal on the data, below it on ~every resample
        S.bootstrap(np.arange(10.0), lambda a: len(set(a.tolist())), method="bca")
    constant = S.bootstrap([1.0, 1.0, 1.0, 1.0], method="bca")  # degenerate but defined
    assert (constant.value, constant.ci_low, constant.ci_high) == (1.0, 1.0, 1.0)


def test_bootstrap_drops_and_reports_degenerate_resamples():
    x = np.arange(6.0)
    y = x**2

    def pearson(a, b):
        return np.nan if np.all(a == a[0]) else float(np.corrcoef(a, b)[0, 1])

    draws = np.random.default_rng(1).integers(0, 6, (2000, 6))
    k = int(np.sum(np.all(draws == draws[:, :1], axis=1)))  # constant resamples
    assert k > 0
    e = S.bootstrap((x, y), pearson, n_resamples=2000, seed=1)
    assert e.notes[-1].startswith(f"{k} of 2000 bootstrap resamples were degenerate")
    with pytest.raises(StatsError, match="undefined statistic"):
        S.bootstrap(([0.0, 1.0], [1.0, 2.0]), pearson, n_resamples=500, seed=0)


# --------------------------------------------------------------------------------------------
# Rates
# --------------------------------------------------------------------------------------------


def wilson_by_quadratic(k: int, n: int, conf: float) -> tuple[float, float]:
    """Independent derivation: the p solving (p_hat - p)^2 = z^2 p (1 - p) / n."""
    z = ss.norm.ppf(1 - (1 - conf) / 2)
    ph = k / n
    roots = np.sort(np.roots([1 + z * z / n, -(2 * ph + z * z / n), ph * ph]).real)
    return float(roots[0]), float(roots[1])


@pytest.mark.parametrize("k,n,conf", [(8, 10, 0.95), (37, 120, 0.95), (3, 50, 0.9), (49, 50, 0.99)])
def test_wilson_matches_quadratic_roots(k, n, conf):
    assert S.wilson(k, n, conf) == pytest.approx(wilson_by_quadratic(k, n, conf), abs=1e-12)


def test_wilson_hand_values_and_edges():
    z2 = ss.norm.ppf(0.975) ** 2
    assert S.wilson(0, 10) == (0.0, pytest.approx(z2 / (10 + z2), abs=1e-12))  # 0.2775
    assert S.wilson(0, 10)[1] == pytest.approx(0.27753, abs=1e-5)
    lo, hi = S.wilson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2), abs=1e-12)
    with pytest.raises(StatsError, match="between 0 and n=5"):
        S.wilson(6, 5)
    with pytest.raises(StatsError, match="n \\(number of trials\\)"):
        S.wilson(0, 0)


def test_wilson_exact_coverage_is_near_nominal():
    """Exact coverage (sum of binomial pmf over k whose interval covers p), no simulation."""
    for p, n in [(0.3, 50), (0.1, 100), (0.5, 20)]:
        cov = sum(ss.binom.pmf(k, n, p) for k in range(n + 1) if S.wilson(k, n)[0] <= p <= S.wilson(k, n)[1])
        assert 0.92 <= cov <= 0.98


def test_proportion_forms():
    a = S.proportion(7, 20)
    b = S.proportion([1] * 7 + [0] * 13)
    c = S.proportion(np.array([True] * 7 + [False] * 13))
    assert a == b == c
    assert a.value == 0.35 and a.method == "wilson" and a.stderr == pytest.approx(math.sqrt(0.35 * 0.65 / 20))
    g = S.proportion([1, 1, 0, 0, 1, 0, 1, 1], groups=[0, 0, 1, 1, 2, 2, 3, 3], n_resamples=500)
    assert g.method == "cluster bootstrap percentile" and g.n == 4 and g.value == 5 / 8
    allzero = S.proportion([0] * 12, groups=np.repeat(np.arange(4), 3))
    assert allzero.method == "wilson" and allzero.n == 4
    assert allzero.ci_high == pytest.approx(S.wilson(0, 4)[1]) and "degenerate" in allzero.notes[0]
    with pytest.raises(StatsError, match="only 0/1"):
        S.proportion([0, 1, 2])


# --------------------------------------------------------------------------------------------
# Rank correlations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_spearman_and_kendall_point_values_equal_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = tied(rng, 40, 6)
    y = x + tied(rng, 40, 4)
    sp = S.spearman(x, y, n_resamples=100, n_permutations=100)
    kt = S.kendall_tau_b(x, y, n_resamples=100, n_permutations=100)
    assert sp.value == pytest.approx(ss.spearmanr(x, y).statistic, abs=1e-12)
    assert kt.value == pytest.approx(ss.kendalltau(x, y, variant="b").statistic, abs=1e-12)
    assert sp.statistic == "spearman_rho" and kt.statistic == "kendall_tau_b"


def _scipy_stat(fn):
    def stat(a, b):
        return fn(a, b).statistic

    return stat


@pytest.mark.parametrize("which", ["spearman", "kendall"])
def test_rank_correlation_ci_equals_generic_bootstrap_of_scipy_statistic(which):
    """Our vectorised resampling (ranks per row / Kendall's weighted quadratic forms) equals
    bootstrapping scipy's own statistic on the same resamples, degenerate resamples included."""
    rng = np.random.default_rng(10)
    x = tied(rng, 12, 4)
    y = x + tied(rng, 12, 3)
    ours_fn, ref_fn = (S.spearman, ss.spearmanr) if which == "spearman" else (S.kendall_tau_b, ss.kendalltau)
    ours = ours_fn(x, y, n_resamples=400, n_permutations=50, seed=9)
    with warnings.catch_warnings():  # scipy warns on constant resamples (returns NaN)
        warnings.simplefilter("ignore")
        ref = S.bootstrap((x, y), _scipy_stat(ref_fn), n_resamples=400, seed=9)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-12)
    assert ours.stderr == pytest.approx(ref.stderr, abs=1e-12)


def test_kendall_bca_equals_generic_bca():
    rng = np.random.default_rng(12)
    x = rng.normal(size=20)
    y = x + rng.normal(size=20)
    ours = S.kendall_tau_b(x, y, n_resamples=400, n_permutations=50, seed=1, ci_method="bca")
    ref = S.bootstrap((x, y), _scipy_stat(ss.kendalltau), n_resamples=400, seed=1, method="bca")
    assert (ours.ci_low, ours.ci_high) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-12)


def test_kendall_permutation_sweep_equals_brute_force():
    rng = np.random.default_rng(13)
    for n in (9, 40):
        xr, yr = tied(rng, n, 5), tied(rng, n, 7)
        perms = rng.permuted(np.broadcast_to(np.arange(n), (30, n)), axis=1)
        sx = np.sign(xr[:, None] - xr[None, :])
        yp = yr[perms]
        brute = np.array([np.sum(np.triu(sx * np.sign(row[:, None] - row[None, :]), 1)) for row in yp])
        np.testing.assert_array_equal(S._kendall_s_permuted(xr, yr, perms), brute)


@pytest.mark.parametrize("which", ["spearman", "kendall"])
def test_exact_permutation_p_small_n(which):
    x = [1.0, 2.0, 3.0, 4.0]
    fn, ref = (S.spearman, ss.spearmanr) if which == "spearman" else (S.kendall_tau_b, ss.kendalltau)
    e = fn(x, [10.0, 20.0, 30.0, 40.0], n_resamples=50)
    assert e.p_value == pytest.approx(2 / 24)  # identity and reversal of 24 permutations
    assert "exact" in e.notes[-1]
    # With ties, against brute-force enumeration with scipy's statistic.
    x5 = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    y5 = np.array([2.0, 1.0, 4.0, 4.0, 3.0])
    obs = abs(ref(x5, y5).statistic)
    k = sum(abs(ref(x5, y5[list(p)]).statistic) >= obs - 1e-12 for p in itertools.permutations(range(5)))
    assert fn(x5, y5, n_resamples=50).p_value == pytest.approx(k / 120)


def test_monte_carlo_permutation_p_matches_scipy_permutation_test():
    rng = np.random.default_rng(14)
    x = rng.normal(size=15)
    y = 0.4 * x + rng.normal(size=15)
    ours = S.spearman(x, y, n_permutations=4000, n_resamples=100, seed=0)
    ref = ss.permutation_test(
        (y,), lambda v: ss.spearmanr(x, v).statistic, permutation_type="pairings",
        n_resamples=2000, rng=np.random.default_rng(1),
    )
    assert abs(ours.p_value - ref.pvalue) < 0.04  # two Monte Carlo estimates, SE of difference ~0.01
    strong = S.spearman(np.arange(30.0), np.arange(30.0) ** 3, n_permutations=999, n_resamples=100)
    assert strong.p_value == pytest.approx(1 / 1000)  # add-one: never 0
    assert "add-one" in strong.notes[-1]


def test_rank_correlation_deterministic_given_seed():
    rng = np.random.default_rng(15)
    x, y = rng.normal(size=25), rng.normal(size=25)
    assert S.spearman(x, y, seed=4) == S.spearman(x, y, seed=4)
    assert S.kendall_tau_b(x, y, seed=4) == S.kendall_tau_b(x, y, seed=4)


def test_rank_correlation_errors():
    with pytest.raises(StatsError, match=r"x is constant \(every value is 2"):
        S.spearman([2, 2, 2, 2], [1, 2, 3, 4])
    with pytest.raises(StatsError, match="y is constant"):
        S.kendall_tau_b([1, 2, 3, 4], [0, 0, 0, 0])
    with pytest.raises(StatsError, match="at least 3 pairs; got 2"):
        S.spearman([1, 2], [2, 1])
    with pytest.raises(StatsError, match="x has 4 values, y has 3"):
        S.spearman([1, 2, 3, 4], [1, 2, 3])
    with pytest.raises(StatsError, match="y has 1 NaN value.*index 2"):
        S.kendall_tau_b([1, 2, 3, 4], [1, 2, np.nan, 4])


# --------------------------------------------------------------------------------------------
# Kappa and AUROC
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohens_kappa_equals_sklearn(weights):
    rng = np.random.default_rng(20)
    a = rng.integers(0, 4, 60)
    b = np.where(rng.random(60) < 0.6, a, rng.integers(0, 4, 60))
    e = S.cohens_kappa(a, b, weights=weights, n_resamples=300)
    assert e.value == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)
    assert e.ci_low <= e.value <= e.ci_high and e.n == 60


def test_cohens_kappa_string_labels_and_undefined():
    a = ["refuse", "comply", "comply", "refuse", "comply", "comply"]
    b = ["refuse", "comply", "refuse", "refuse", "comply", "comply"]
    assert S.cohens_kappa(a, b, n_resamples=200).value == pytest.approx(cohen_kappa_score(a, b))
    with pytest.raises(StatsError, match="kappa is undefined.*same label"):
        S.cohens_kappa([1, 1, 1], [1, 1, 1])
    with pytest.raises(StatsError, match="a has 3 values, b has 2"):
        S.cohens_kappa([1, 0, 1], [1, 0])


@pytest.mark.parametrize("seed", range(3))
def test_auroc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    scores = np.round(labels * 0.8 + rng.normal(size=80), 1)  # rounding creates ties
    e = S.auroc(scores, labels, n_resamples=300)
    assert e.value == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert e.ci_low <= e.value <= e.ci_high and e.method == "stratified bootstrap percentile"


def test_auroc_delong_stderr_equals_bruteforce_definition():
    rng = np.random.default_rng(30)
    pos = np.round(rng.normal(1.0, 1.0, 23), 1)
    neg = np.round(rng.normal(0.0, 1.0, 31), 1)
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    se = math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)
    scores = np.concatenate([pos, neg])
    labels = np.r_[np.ones(23), np.zeros(31)]
    e = S.auroc(scores, labels, ci_method="delong")
    assert e.value == pytest.approx(psi.mean(), abs=1e-12)
    assert e.stderr == pytest.approx(se, rel=1e-10)
    z = ss.norm.ppf(0.975)
    assert (e.ci_low, e.ci_high) == pytest.approx((psi.mean() - z * se, min(1.0, psi.mean() + z * se)), abs=1e-12)
    assert e.p_value == pytest.approx(2 * ss.norm.sf(abs(psi.mean() - 0.5) / se), rel=1e-9)
    assert e.seed is None and e.method == "delong"


def test_auroc_labels_and_errors():
    s = np.arange(10.0)
    lab = np.array(["harmless"] * 5 + ["harmful"] * 5)
    e = S.auroc(s, lab, pos_label="harmful", n_resamples=200)
    assert e.value == 1.0 and e.p_value is None  # perfect separation: DeLong SE is 0
    with pytest.raises(StatsError, match="pass pos_label"):
        S.auroc(s, lab)
    with pytest.raises(StatsError, match=r"AUROC needs both classes; got only label 1 \(n=12\)"):
        S.auroc(np.arange(12.0), np.ones(12, dtype=int))
    with pytest.raises(StatsError, match="scores is constant"):
        S.auroc(np.full(10, 0.3), [0, 1] * 5)
    with pytest.raises(StatsError, match="at least 2 units of each class; got 1 positive"):
        S.auroc(np.arange(6.0), [1, 0, 0, 0, 0, 0])
    with pytest.raises(StatsError, match="scores has 1 NaN"):
        S.auroc([0.1, np.nan, 0.3, 0.4], [0, 0, 1, 1])


# --------------------------------------------------------------------------------------------
# pass@k and pass^k
# --------------------------------------------------------------------------------------------


def subsets_fraction(n: int, c: int, k: int, predicate) -> float:
    correct = [True] * c + [False] * (n - c)
    subs = list(itertools.combinations(range(n), k))
    return sum(predicate([correct[i] for i in s]) for s in subs) / len(subs)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (6, 2, 3), (7, 5, 4), (8, 1, 8), (8, 8, 3), (10, 3, 5)])
def test_pass_at_k_and_pass_hat_k_equal_subset_enumeration(n, c, k):
    assert S.pass_at_k(n, c, k) == pytest.approx(subsets_fraction(n, c, k, any), abs=1e-12)
    assert S.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    assert S.pass_hat_k(n, c, k) == pytest.approx(subsets_fraction(n, c, k, all), abs=1e-12)


def test_pass_at_k_large_n_stable_and_over_tasks():
    assert S.pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100), rel=1e-12)
    cs = [0, 1, 3, 5, 10, 2]
    e = S.pass_at_k_over_tasks(10, cs, 3, n_resamples=300)
    assert e.value == pytest.approx(np.mean([S.pass_at_k(10, c, 3) for c in cs]))
    assert e.n == 6 and e.statistic == "pass@3" and e.ci_low <= e.value <= e.ci_high
    h = S.pass_hat_k_over_tasks([10, 12, 10, 8, 10, 10], cs, 2, n_resamples=300)
    assert h.value == pytest.approx(np.mean([S.pass_hat_k(n, c, 2) for n, c in zip([10, 12, 10, 8, 10, 10], cs)]))
    assert h.value < e.value  # pass^k <= pass@k
    with pytest.raises(StatsError, match="k=4 exceeds n=3"):
        S.pass_at_k(3, 1, 4)
    with pytest.raises(StatsError, match=r"in \[0, n=3\]"):
        S.pass_hat_k(3, 4, 1)
    with pytest.raises(StatsError, match="at least 2 tasks"):
        S.pass_at_k_over_tasks(5, [1], 1)


# --------------------------------------------------------------------------------------------
# Multiple comparisons
# --------------------------------------------------------------------------------------------


def test_holm_and_bh_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    h = S.holm(p)
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(h.p_adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(h.reject, [True, False, False, True])
    bh = S.benjamini_hochberg(p)
    # sorted m p / j: 0.02, 0.02, 0.04, 0.04 -> running min from the right
    np.testing.assert_allclose(bh.p_adjusted, [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_array_equal(bh.reject, [True, True, True, True])
    # R: p.adjust(c(.01,.02,.03,.04,.05), "holm") and "BH"
    five = [0.01, 0.02, 0.03, 0.04, 0.05]
    np.testing.assert_allclose(S.holm(five).p_adjusted, [0.05, 0.08, 0.09, 0.09, 0.09])
    np.testing.assert_allclose(S.benjamini_hochberg(five).p_adjusted, [0.05] * 5)
    np.testing.assert_allclose(S.holm([0.5, 0.9]).p_adjusted, [1.0, 1.0])  # capped at 1
    adj, rej = S.adjust_pvalues([0.001, 0.2, 0.03], method="bh", alpha=0.05)
    np.testing.assert_allclose(adj, [0.003, 0.2, 0.045])
    np.testing.assert_array_equal(rej, [True, False, True])
    with pytest.raises(StatsError, match=r"\[0, 1\]"):
        S.holm([0.1, 1.2])


# --------------------------------------------------------------------------------------------
# Power and sample size
# --------------------------------------------------------------------------------------------


def fleiss_n(p1, p2, alpha=0.05, power=0.8, two_sided=True):
    za = ss.norm.ppf(1 - alpha / 2 if two_sided else 1 - alpha)
    zb = ss.norm.ppf(power)
    pbar = (p1 + p2) / 2
    return (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p1 - p2) ** 2


@pytest.mark.parametrize("p1,p2,alpha,power,two", [(0.5, 0.6, 0.05, 0.8, True), (0.1, 0.3, 0.01, 0.9, True), (0.05, 0.15, 0.05, 0.8, False)])
def test_sample_size_formula_and_power_inverse(p1, p2, alpha, power, two):
    n = S.two_proportion_sample_size(p1, p2, alpha, power, two)
    assert n == math.ceil(fleiss_n(p1, p2, alpha, power, two))
    assert S.two_proportion_power(n, p1, p2, alpha, two) >= power > S.two_proportion_power(n - 1, p1, p2, alpha, two)
    d = S.detectable_difference(n, p1, alpha, power, two)
    assert 0 < d <= abs(p2 - p1) + 1e-9
    assert S.two_proportion_power(n, p1, p1 + d, alpha, two) == pytest.approx(power, abs=1e-6)


def test_sample_size_hand_value_and_errors():
    assert S.two_proportion_sample_size(0.5, 0.6) == 388  # (1.96*0.7036 + 0.8416*0.7)^2 / 0.01 = 387.3
    with pytest.raises(StatsError, match="zero difference"):
        S.two_proportion_sample_size(0.3, 0.3)
    with pytest.raises(StatsError, match="increase n"):
        S.detectable_difference(3, 0.5)


def test_auroc_difference_is_delongs_correlated_test():
    """AUROC(a) - AUROC(b) on the same examples: the value equals scikit-learn's two AUROCs' difference, the
    variance DeLong's covariance form written out by hand, and a constant scorer leaves a's own DeLong error."""
    from sklearn.metrics import roc_auc_score

    from workbench.stats import auroc, auroc_difference

    rng = np.random.default_rng(4)
    y = np.r_[np.ones(30), np.zeros(45)].astype(int)
    a = y + rng.normal(0, 1.0, y.size)
    b = 0.6 * a + y * 0.2 + rng.normal(0, 1.0, y.size)  # correlated with a
    d = auroc_difference(a, b, y)
    assert d.value == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)

    def placements(s):
        pos, neg = s[y == 1], s[y == 0]
        v10 = np.array([np.mean((p > neg) + 0.5 * (p == neg)) for p in pos])
        v01 = np.array([np.mean((pos > q) + 0.5 * (pos == q)) for q in neg])
        return v10, v01
    (a10, a01), (b10, b01) = placements(a), placements(b)
    s10, s01 = np.cov(np.stack([a10, b10])), np.cov(np.stack([a01, b01]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / a10.size + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / a01.size
    assert d.stderr == pytest.approx(np.sqrt(var), rel=1e-10)
    assert d.ci_low < d.value < d.ci_high and 0 < d.p_value < 1
    # the covariance matters: the paired error is smaller than the two separate errors combined
    assert d.stderr < np.hypot(auroc(a, y).stderr, auroc(b, y).stderr)
    const = auroc_difference(a, np.zeros(y.size), y)
    assert const.stderr == pytest.approx(auroc(a, y).stderr, rel=1e-10)
    assert const.value == pytest.approx(roc_auc_score(y, a) - 0.5)
    with pytest.raises(ValueError, match="2 units of each class"):
        auroc_difference(a[:3], b[:3], [1, 0, 0])
