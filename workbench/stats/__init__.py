"""Statistics for interpretability results: every number with an interval.

A package of small modules by topic, all re-exported here (``from workbench.stats import X``):

- :mod:`~workbench.stats.estimate`: :class:`Estimate`, the result type;
- :mod:`~workbench.stats.resampling`: :func:`bootstrap` (units, clusters, strata; percentile or BCa);
- :mod:`~workbench.stats.means`: :func:`mean_estimate` (bootstrap or normal, clustered), :func:`paired_difference`,
  :func:`normal_estimate`;
- :mod:`~workbench.stats.rates`: :func:`wilson`, :func:`proportion`;
- :mod:`~workbench.stats.correlation`: :func:`spearman`, :func:`kendall_tau_b`;
- :mod:`~workbench.stats.kappa`: :func:`cohens_kappa`;
- :mod:`~workbench.stats.roc`: :func:`auroc` (clustered DeLong / cluster bootstrap with ``groups``), :func:`auroc_difference` (paired DeLong), DeLong
  placements and variance, vectorised :func:`auroc_rows`;
- :mod:`~workbench.stats.passk`: pass@k and pass^k;
- :mod:`~workbench.stats.multiple`: Holm and Benjamini-Hochberg;
- :mod:`~workbench.stats.power`: power and sample size for two rates;
- ``_base``: the error, validation, ranks, seeds (internal).

Pure numpy (plus the standard library's :class:`statistics.NormalDist`); scipy, scikit-learn
and statsmodels appear only in the tests, as references. Every random choice is drawn from
``numpy.random.default_rng(seed)``, so a result is reproducible from its ``seed``.

Conventions
-----------
* Every estimator returns an :class:`Estimate` (value, confidence interval, stderr when
  defined, n, method, seed, optional p-value). Nothing returns NaN: an undefined quantity raises
  :class:`StatsError` (a :class:`ValueError`) that says what was wrong and what to do.
* The bootstrap resamples **units** (prompts, personas, layers...). When several generations
  share a prompt, pass ``groups=`` so the prompts are resampled, not the generations
  (a cluster bootstrap): generations of one prompt are correlated, and treating them as
  independent makes intervals too narrow.
* Rank statistics (Spearman, Kendall tau-b, AUROC) use average ranks for ties, so their
  point values equal scipy's / scikit-learn's.

References
----------
* Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference.
  JASA 22(158), 209-212.
* Efron, B. (1987). Better bootstrap confidence intervals. JASA 82(397), 171-185 (BCa);
  Efron & Tibshirani (1993), An Introduction to the Bootstrap, ch. 14 (eq. 14.9-14.15).
* Davison & Hinkley (1997), Bootstrap Methods and their Application, sec. 3.8 (cluster
  bootstrap: resample the top-level units).
* DeLong, E. R., DeLong, D. M. & Clarke-Pearson, D. L. (1988). Comparing the areas under two or
  more correlated ROC curves: a nonparametric approach. Biometrics 44(3), 837-845; fast midrank
  form from Sun & Xu (2014), IEEE Signal Processing Letters 21(11).
* Chen, M. et al. (2021). Evaluating Large Language Models Trained on Code (pass@k unbiased
  estimator, eq. 1 and its numerically stable product form).
* Yao, S. et al. (2024). tau-bench: A Benchmark for Tool-Agent-User Interaction in Real-World
  Domains (pass^k = C(c, k) / C(n, k), averaged over tasks).
* Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Stat. 6.
* Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57(1).
* Fleiss, J. L., Levin, B. & Paik, M. C. (2003). Statistical Methods for Rates and Proportions,
  3rd ed., eq. 4.14 (two-proportion sample size, normal approximation, no continuity
  correction).
* Cohen, J. (1960). A coefficient of agreement for nominal scales. Educ. Psychol. Meas. 20(1).
* Kendall, M. G. (1945). The treatment of ties in ranking problems. Biometrika 33(3) (tau-b).
* Friedman, M. (1937). JASA 32(200), 675-701 (repeated measures; Kendall's W = Q / (n (k - 1))).
* Fisher, R. A. (1935), The Design of Experiments, sec. 21 (the paired sign-flip test).
* Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be zero. Stat. Appl.
  Genet. Mol. Biol. 9(1) (the (k + 1) / (n + 1) correction).
"""


from __future__ import annotations

from workbench.stats._base import MIN_BOOTSTRAP_UNITS, MIN_CORRELATION_UNITS, StatsError

# Internal helpers kept reachable under their old names (used by workbench.crosscheck/plots and the tests).
from workbench.stats._base import _check_confidence as _check_confidence
from workbench.stats._base import _check_same_length as _check_same_length
from workbench.stats._base import _float_1d as _float_1d
from workbench.stats._base import _rankdata as _rankdata
from workbench.stats.correlation import _kendall_s_permuted as _kendall_s_permuted
from workbench.stats.correlation import kendall_tau_b, spearman
from workbench.stats.estimate import Estimate
from workbench.stats.estimate import _decimals as _decimals
from workbench.stats.estimate import _fmt_conf as _fmt_conf
from workbench.stats.estimate import _fmt_p as _fmt_p
from workbench.stats.kappa import cohens_kappa
from workbench.stats.means import mean_estimate, normal_estimate, paired_difference
from workbench.stats.multiple import AdjustedPValues, adjust_pvalues, benjamini_hochberg, holm
from workbench.stats.paired import chi2_sf, friedman, paired_mean_difference
from workbench.stats.passk import pass_at_k, pass_at_k_over_tasks, pass_hat_k, pass_hat_k_over_tasks
from workbench.stats.power import detectable_difference, two_proportion_power, two_proportion_sample_size
from workbench.stats.rates import proportion, wilson
from workbench.stats.resampling import bootstrap
from workbench.stats.roc import IndexedAUROC, auroc, auroc_difference, auroc_rows, delong_placements, delong_variance

__all__ = [
    "StatsError",
    "Estimate",
    "bootstrap",
    "wilson",
    "proportion",
    "spearman",
    "kendall_tau_b",
    "cohens_kappa",
    "auroc",
    "auroc_difference",
    "pass_at_k",
    "pass_hat_k",
    "pass_at_k_over_tasks",
    "pass_hat_k_over_tasks",
    "AdjustedPValues",
    "holm",
    "benjamini_hochberg",
    "adjust_pvalues",
    "two_proportion_sample_size",
    "two_proportion_power",
    "detectable_difference",
    "MIN_BOOTSTRAP_UNITS",
    "MIN_CORRELATION_UNITS",
    "mean_estimate",
    "normal_estimate",
    "paired_difference",
    "auroc_rows",
    "delong_placements",
    "delong_variance",
    "IndexedAUROC",
    "paired_mean_difference",
    "friedman",
    "chi2_sf",
]
