"""Probe metrics with uncertainty: the probe's policies over :mod:`workbench.stats` (which implements the
statistics: DeLong and its clustered form, normal and bootstrap means, the cluster bootstrap of an AUROC).

Two kinds of interval, chosen by cost (a layer sweep reports hundreds of numbers; a headline
number is one):

- **analytic** (``ci="delong"``, the default for grids): DeLong et al. (1988) for AUROC from
  the placement values, and its cluster-robust form (Obuchowski 1997, "Nonparametric analysis
  of clustered ROC curve data", Biometrics 53:567) when examples come in clusters
  (contrastive pairs, several prompts per topic): placements are summed per cluster, so
  correlated examples are not counted as independent. Accuracy and paired differences use a
  cluster-robust normal interval for a mean (ratio estimator over clusters) or Wilson without
  clusters. Microseconds per number.
- **bootstrap** (``ci="bootstrap"``): stratified by class, or over clusters when examples
  cluster; for headline numbers (:func:`probe.sweep.layer_sweep` recomputes its best layer's
  AUROC this way).

- :func:`auroc_estimate`, :func:`accuracy_estimate`, :func:`macro_auroc_estimate` (one-vs-rest,
  more than two classes), paired differences with the analytic interval (selectivity, Hewitt & Liang
  2019; score shifts), :func:`mean_auroc_estimate` (controls averaged over several shuffles/directions:
  the interval adds the between-draw variance, so it is about the control, not one draw).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from workbench.stats import (
    Estimate,
    StatsError,
    auroc,
    auroc_rows,
    bootstrap,
    delong_placements,
    delong_variance,
    mean_estimate,
    normal_estimate,
    paired_difference,
    proportion,
)

# paired_difference, auc_rows and delong_placements are workbench.stats' own, re-exported under their old names.
__all__ = ["auroc_estimate", "accuracy_estimate", "macro_auroc_estimate", "paired_difference", "auc_rows",
           "analytic_auroc_gaussian", "mean_auroc_estimate", "delong_placements"]

#: ``ci="auto"``: bootstrap up to this many examples, the analytic interval above.
AUTO_BOOTSTRAP_MAX_N = 4000

auc_rows = auroc_rows


def _with_null_p(est: Estimate, auc: float, n1: int, n0: int, unit_fraction: float = 1.0) -> Estimate:
    """At perfect separation DeLong's SE is 0 and gives no p-value; use the Mann-Whitney normal
    approximation under H0 (variance (n1 + n0 + 1) / (12 n1 n0), counts scaled by the fraction
    of independent units when examples cluster)."""
    from statistics import NormalDist

    m1, m0 = max(1.0, n1 * unit_fraction), max(1.0, n0 * unit_fraction)
    se0 = float(np.sqrt((m1 + m0 + 1.0) / (12.0 * m1 * m0)))
    p = 2.0 * (1.0 - NormalDist().cdf(abs(auc - 0.5) / se0))
    return dataclasses.replace(est, p_value=p, notes=est.notes + (
        "p-value from the Mann-Whitney null variance (the DeLong SE is 0 at perfect separation)",))


def _check_binary(s: np.ndarray, y: np.ndarray) -> None:
    if s.shape[-1] != y.size:
        raise StatsError(f"{s.shape[-1]} scores for {y.size} labels")
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 < 2 or n0 < 2:
        raise StatsError(f"AUROC with an interval needs at least 2 examples of each class; got {n1} positive and "
                         f"{n0} negative. Add examples of the smaller class.")
    if not np.all(np.isfinite(s)):
        raise StatsError("scores contain NaN or inf")


def _has_clusters(groups: Any) -> bool:
    if groups is None:
        return False
    g = np.asarray(groups)
    return np.unique(g).size < g.size


def _cluster_ids(groups: Any) -> np.ndarray | None:
    """Cluster index per example when ``groups`` has clusters (some group with >1 example) and
    at least two of them. A single cluster has no between-cluster variance to estimate, so its
    examples are treated as independent, and :func:`_one_cluster_note` says so."""
    if not _has_clusters(groups):
        return None
    g = np.asarray(groups)
    return g if np.unique(g).size >= 2 else None


def _one_cluster_note(groups: Any) -> tuple[str, ...]:
    g = None if groups is None else np.asarray(groups)
    if g is None or g.size < 2 or np.unique(g).size != 1:
        return ()
    return ("every example is in one cluster: the interval treats them as independent, which is optimistic; "
            "evaluate on more groups (topics, templates) for a cluster-robust interval",)


def auroc_estimate(scores: Any, labels: Any, groups: Sequence[Any] | None = None, *, ci: str = "delong",
                   n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> Estimate:
    """AUROC of ``scores`` for binary ``labels`` (1 = positive) with a confidence interval.

    ``ci``: ``"delong"`` (default: analytic; cluster-robust, Obuchowski 1997, when ``groups``
    has clusters), ``"bootstrap"`` (stratified by class, or over clusters), or ``"auto"``
    (bootstrap up to 4000 examples, analytic above). ``stderr`` and ``p_value`` (AUROC = 0.5,
    z-test) are the analytic ones in every case, cluster-robust with clusters.
    """
    s = np.asarray(scores, float)
    y = np.asarray(labels).astype(int)
    _check_binary(s, y)
    if np.ptp(s) == 0:
        raise StatsError("every example has the same score; AUROC is 0.5 by construction and has no interval")
    if ci == "auto":
        ci = "bootstrap" if s.size <= AUTO_BOOTSTRAP_MAX_N else "delong"
    if ci not in ("delong", "bootstrap"):
        raise StatsError(f"ci must be 'delong', 'bootstrap' or 'auto'; got {ci!r}")
    g = _cluster_ids(groups)
    est = auroc(s, y, pos_label=1, groups=g, ci_method=ci, n_resamples=n_resamples, seed=seed, confidence=confidence)
    if est.p_value is None and est.value != 0.5:
        est = _with_null_p(est, est.value, int(y.sum()), int((1 - y).sum()), est.n / s.size)
    return dataclasses.replace(est, notes=est.notes + _one_cluster_note(groups))


def _mean_estimate(x: np.ndarray, groups: Any, confidence: float, statistic: str, lo: float, hi: float,
                   null: float | None = None) -> Estimate:
    """Mean of per-example values with a normal interval (:func:`workbench.stats.mean_estimate`, ``ci="normal"``):
    cluster-robust when ``groups`` cluster, else the plain standard error; one cluster counts as independent
    examples (noted)."""
    est = mean_estimate(x, _cluster_ids(groups), ci="normal", confidence=confidence, statistic=statistic,
                        bounds=(lo, hi), null=null)
    return dataclasses.replace(est, notes=est.notes + _one_cluster_note(groups))


def accuracy_estimate(correct: Any, groups: Sequence[Any] | None = None, *, confidence: float = 0.95,
                      **_: Any) -> Estimate:
    """Fraction correct: Wilson interval, or a cluster-robust normal interval when ``groups``
    cluster (correct answers within a pair or topic are not independent)."""
    c = np.asarray(correct).astype(float)
    if _has_clusters(groups):
        return _mean_estimate(c, groups, confidence, "accuracy", 0.0, 1.0)
    return proportion(c, confidence=confidence)


def macro_auroc_estimate(probs: Any, labels: Any, groups: Sequence[Any] | None = None, *, ci: str = "delong",
                         n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Estimate:
    """One-vs-rest macro AUROC of class scores ``[n, K]`` (classes absent from ``labels`` are
    skipped). ``ci="delong"`` (default): normal interval from each example's influence on the
    macro average (its DeLong placements in every one-vs-rest AUROC; summed per cluster when
    ``groups`` cluster); ``"bootstrap"``: resample examples (clusters)."""
    P = np.asarray(probs, float)
    y = np.asarray(labels).astype(int)
    K = P.shape[1]
    present = [k for k in range(K) if 2 <= int((y == k).sum()) <= y.size - 2]
    if len(present) < 2:
        raise StatsError(f"macro AUROC needs at least two classes with 2+ examples in the evaluated labels; got "
                         f"counts {np.bincount(y, minlength=K).tolist()}")
    if ci == "delong":
        infl = np.zeros(y.size)
        aucs = []
        for k in present:
            lab = y == k
            v10, v01, auc = delong_placements(P[:, k], lab)
            aucs.append(auc)
            infl[lab] += (v10 - auc) / lab.sum()
            infl[~lab] += (v01 - auc) / (~lab).sum()
        infl /= len(present)
        g = _cluster_ids(groups)
        if g is not None:
            _, gi = np.unique(g, return_inverse=True)
            t = np.bincount(gi, weights=infl)
            G = t.size
        else:
            t, G = infl, y.size
        var = G / (G - 1.0) * float((t * t).sum())
        return normal_estimate(float(np.mean(aucs)), var, n=G, confidence=confidence, method="delong (influence)" + (
            ", clustered" if g is not None else ""), statistic="macro_auroc", null=0.5, bounds=(0.0, 1.0),
            notes=(f"one-vs-rest over classes {present}",))

    def stat(p, lab, axis=-1):
        p = np.asarray(p)
        lab = np.asarray(lab)
        if p.ndim == 2:
            return np.nanmean([auc_rows(p[:, k], lab == k) for k in present])
        vals = np.stack([auc_rows(p[..., k], lab == k) for k in present], -1)
        with np.errstate(all="ignore"):
            return np.where(np.isnan(vals).all(-1), np.nan, np.nanmean(np.where(np.isnan(vals), np.nan, vals), -1))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = bootstrap((P, y), stat, groups=list(np.asarray(groups)) if _has_clusters(groups) else None,
                        n_resamples=n_resamples, seed=seed, vectorized=True, confidence=confidence)
    return dataclasses.replace(est, statistic="macro_auroc")


def _paired_difference(a: Any, b: Any, groups: Sequence[Any] | None = None, *, statistic: str = "mean_difference",
                       confidence: float = 0.95) -> Estimate:
    """``mean(a - b)`` over the same examples with the analytic interval (:func:`workbench.stats.paired_difference`,
    ``ci="normal"``: cluster-robust when ``groups`` cluster; one cluster counts as independent examples, noted)."""
    est = paired_difference(a, b, _cluster_ids(groups), ci="normal", statistic=statistic, confidence=confidence)
    return dataclasses.replace(est, notes=est.notes + _one_cluster_note(groups))


def analytic_auroc_gaussian(separation: float, sigma: float = 1.0, cosine: float = 1.0) -> float:
    """AUROC of a linear score when ``x = noise + y * s * u`` (isotropic Gaussian noise of std
    ``sigma``, ``|u| = 1``) and the score projects on a unit direction ``w`` with ``w . u =
    cosine``: the projection differs by ``s * cosine`` between classes with std ``sigma`` in
    each, so AUROC = Phi(s * cosine / (sigma * sqrt(2))). ``cosine=1`` is the optimum (the Bayes
    direction); a probe learned from finite data has ``cosine < 1`` and its expected test AUROC
    is this function of its own cosine."""
    from statistics import NormalDist

    return NormalDist().cdf(separation * cosine / (sigma * np.sqrt(2.0)))


def mean_auroc_estimate(scores: Any, labels: Any, groups: Sequence[Any] | None = None, *, confidence: float = 0.95,
                        statistic: str = "mean_auroc", **_: Any) -> Estimate:
    """Mean AUROC of several score vectors ``[S, n]`` on the same examples (probes trained on
    ``S`` label shuffles, or ``S`` random directions), with an analytic interval whose variance
    is the test-sample part (DeLong on the averaged placements, clustered when ``groups``
    cluster) plus the between-draw part ``var_s(AUROC_s) / S``: the interval is about the
    control (a new set of shuffles on a new test sample), not about the particular draws."""
    D = np.asarray(scores, float)
    if D.ndim == 1:
        D = D[None]
    y = np.asarray(labels).astype(int)
    _check_binary(D, y)
    g = _cluster_ids(groups)
    v10, v01, auc = delong_placements(D, y)  # [S, n1], [S, n0], [S]
    m = float(auc.mean())
    var_test = float(delong_variance(v10.mean(0), v01.mean(0), np.asarray(m), y, g))
    S = D.shape[0]
    var_between = float(auc.var(ddof=1)) / S if S > 1 else 0.0
    units = int(np.unique(g).size) if g is not None else y.size
    return normal_estimate(m, var_test + var_between, n=units, confidence=confidence,
                           method="delong" + (" (clustered, Obuchowski)" if g is not None else "") + " + between-draw",
                           statistic=statistic, null=0.5, bounds=(0.0, 1.0),
                           notes=(f"mean over {S} score vectors (AUROC range {auc.min():.3f}-{auc.max():.3f})",))
