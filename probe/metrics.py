"""Probe metrics with uncertainty, reported through :mod:`workbench.stats`.

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
  more than two classes), :func:`paired_difference` (selectivity, Hewitt & Liang 2019; score
  shifts), :func:`mean_auroc_estimate` (controls averaged over several shuffles/directions:
  the interval adds the between-draw variance, so it is about the control, not one draw).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.stats import Estimate, StatsError, auroc, bootstrap, proportion

__all__ = ["auroc_estimate", "accuracy_estimate", "macro_auroc_estimate", "paired_difference", "auc_rows",
           "analytic_auroc_gaussian", "mean_auroc_estimate", "delong_placements"]

#: ``ci="auto"``: bootstrap up to this many examples, the analytic interval above.
AUTO_BOOTSTRAP_MAX_N = 4000


def _midranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) along the last axis, vectorised."""
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    n = a.shape[-1]
    new = np.ones(s.shape, dtype=bool)
    new[..., 1:] = s[..., 1:] != s[..., :-1]
    last = np.ones(s.shape, dtype=bool)
    last[..., :-1] = new[..., 1:]
    pos = np.broadcast_to(np.arange(n), s.shape)
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, pos, n), -1), axis=-1), -1)
    ranks = np.empty(s.shape)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=-1)
    return ranks


def auc_rows(scores: np.ndarray, labels: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rank AUROC along the last axis (ties count 1/2; equals scikit-learn's roc_auc_score); NaN
    where a row lacks a class. Vectorised over leading axes (bootstrap resamples)."""
    s = np.asarray(scores, float)
    lab = np.broadcast_to(np.asarray(labels).astype(bool), s.shape)
    r = _midranks(s)
    npos = lab.sum(-1)
    nneg = lab.shape[-1] - npos
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((r * lab).sum(-1) - npos * (npos + 1) / 2.0) / (npos * nneg)
    return np.where((npos > 0) & (nneg > 0), out, np.nan)


def delong_placements(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong placement values along the last axis: ``V10`` per positive (fraction of negatives
    scored lower, ties 1/2) and ``V01`` per negative (fraction of positives scored higher), and
    the AUROC (``mean(V10) = mean(V01)``). ``scores [..., n]``; returns ``V10 [..., n1]``,
    ``V01 [..., n0]``, ``auc [...]``."""
    s = np.asarray(scores, float)
    lab = np.asarray(labels).astype(bool)
    pos, neg = s[..., lab], s[..., ~lab]
    n1, n0 = pos.shape[-1], neg.shape[-1]
    r_all = _midranks(s)
    v10 = (r_all[..., lab] - _midranks(pos)) / n0
    v01 = 1.0 - (r_all[..., ~lab] - _midranks(neg)) / n1
    return v10, v01, v10.mean(-1)


def _delong_variance(v10: np.ndarray, v01: np.ndarray, auc: np.ndarray, labels: np.ndarray,
                     groups: np.ndarray | None) -> np.ndarray:
    """Variance of the AUROC from placements (last axis); clustered (Obuchowski 1997) when
    ``groups`` are given: placement sums per cluster, ``S10 + S01`` terms and their covariance
    ``S11`` across clusters."""
    lab = np.asarray(labels).astype(bool)
    n1, n0 = v10.shape[-1], v01.shape[-1]
    if groups is None:
        return v10.var(-1, ddof=1) / n1 + v01.var(-1, ddof=1) / n0
    _, gi = np.unique(np.asarray(groups), return_inverse=True)
    G = int(gi.max()) + 1
    g1, g0 = gi[lab], gi[~lab]
    m = np.bincount(g1, minlength=G).astype(float)  # positives per cluster
    k = np.bincount(g0, minlength=G).astype(float)  # negatives per cluster
    lead = v10.shape[:-1]

    def per_cluster(v: np.ndarray, gidx: np.ndarray) -> np.ndarray:
        flat = v.reshape(-1, v.shape[-1])
        B = flat.shape[0]
        pos = (np.arange(B)[:, None] * G + gidx[None, :]).ravel()
        return np.bincount(pos, weights=flat.ravel(), minlength=B * G).reshape(lead + (G,))

    V1, V0 = per_cluster(v10, g1), per_cluster(v01, g0)
    a = np.asarray(auc)[..., None]
    d1 = V1 - m * a
    d0 = V0 - k * a
    c = G / (G - 1.0)
    s10 = c * (d1 * d1).sum(-1) / n1
    s01 = c * (d0 * d0).sum(-1) / n0
    s11 = c * (d1 * d0).sum(-1)
    return s10 / n1 + s01 / n0 + 2.0 * s11 / (n1 * n0)


def _normal_estimate(value: float, var: float, n: int, confidence: float, method: str, statistic: str,
                     null: float | None = None, lo: float = 0.0, hi: float = 1.0, notes: tuple = ()) -> Estimate:
    from statistics import NormalDist

    se = float(np.sqrt(max(var, 0.0)))
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = None
    if null is not None and se > 0:
        p = 2.0 * (1.0 - NormalDist().cdf(abs(value - null) / se))
    return Estimate(float(value), max(lo, value - z * se), min(hi, value + z * se), confidence=confidence, stderr=se,
                    n=n, method=method, p_value=p, statistic=statistic, notes=notes)


def _with_null_p(est: Estimate, auc: float, n1: int, n0: int, unit_fraction: float = 1.0) -> Estimate:
    """At perfect separation DeLong's SE is 0 and gives no p-value; use the Mann-Whitney normal
    approximation under H0 (variance (n1 + n0 + 1) / (12 n1 n0), counts scaled by the fraction
    of independent units when examples cluster)."""
    import dataclasses
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


class _IndexAUC:
    """Mean AUROC of ``Q`` fixed score vectors on bootstrap resamples given as index arrays.

    Each score vector is sorted once; a resample is turned into per-example counts, and the
    Mann-Whitney statistic is accumulated over tie groups in sorted order: O(resamples x n) per
    vector instead of a sort per resample."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        self.S = np.atleast_2d(np.asarray(scores, float))
        self.lab = np.asarray(labels).astype(bool)
        self.n = self.S.shape[1]
        self.orders, self.starts = [], []
        for s in self.S:
            o = np.argsort(s, kind="stable")
            ss = s[o]
            new = np.ones(self.n, bool)
            new[1:] = ss[1:] != ss[:-1]
            self.orders.append(o)
            self.starts.append(np.flatnonzero(new))

    def __call__(self, idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.asarray(idx)
        one = idx.ndim == 1
        idx = np.atleast_2d(idx)
        B = idx.shape[0]
        flat = (idx + self.n * np.arange(B)[:, None]).ravel()
        W = np.bincount(flat, minlength=B * self.n).reshape(B, self.n).astype(float)
        total = np.zeros(B)
        for o, st in zip(self.orders, self.starts):
            Wo = W[:, o]
            lo = self.lab[o]
            negG = np.add.reduceat(Wo * ~lo, st, axis=1)
            posG = np.add.reduceat(Wo * lo, st, axis=1)
            below = np.cumsum(negG, 1) - negG
            with np.errstate(invalid="ignore", divide="ignore"):
                total += (posG * (below + 0.5 * negG)).sum(1) / (posG.sum(1) * negG.sum(1))
        out = total / len(self.orders)
        return out[0] if one else out


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
    v10, v01, auc = delong_placements(s, y)
    var = float(_delong_variance(v10, v01, auc, y, g))
    method = "delong (clustered, Obuchowski)" if g is not None else "delong"
    n_units = int(np.unique(g).size) if g is not None else s.size
    base = _normal_estimate(float(auc), var, n_units, confidence, method, "auroc", null=0.5,
                            notes=(f"{int(y.sum())} positive, {int((1 - y).sum())} negative"
                                   + (f" in {n_units} clusters" if g is not None else ""),) + _one_cluster_note(groups))
    if base.p_value is None and auc != 0.5:
        base = _with_null_p(base, float(auc), int(y.sum()), int((1 - y).sum()), n_units / s.size)
    if ci == "delong":
        return base
    if g is None:
        boot = auroc(s, y, pos_label=1, ci_method="bootstrap", n_resamples=n_resamples, seed=seed,
                     confidence=confidence)
        return Estimate(base.value, boot.ci_low, boot.ci_high, confidence=confidence, stderr=base.stderr, n=s.size,
                        method=boot.method, seed=seed, p_value=base.p_value, statistic="auroc",
                        notes=tuple(boot.notes) + _one_cluster_note(groups))
    boot = bootstrap(np.arange(s.size), _IndexAUC(s, y), groups=list(g), n_resamples=n_resamples,
                     seed=seed, confidence=confidence, vectorized=True)
    return Estimate(base.value, boot.ci_low, boot.ci_high, confidence=confidence, stderr=base.stderr, n=n_units,
                    method="cluster bootstrap percentile", seed=seed, p_value=base.p_value, statistic="auroc",
                    notes=boot.notes + base.notes + ("stderr and p-value: clustered DeLong",))


def _mean_estimate(x: np.ndarray, groups: Any, confidence: float, statistic: str, lo: float, hi: float,
                   null: float | None = None) -> Estimate:
    """Mean of per-example values with a normal interval: cluster-robust (ratio estimator over
    cluster totals) when ``groups`` cluster, else the plain standard error."""
    x = np.asarray(x, float)
    n = x.size
    m = float(x.mean())
    g = _cluster_ids(groups)
    if g is None:
        var = x.var(ddof=1) / n if n > 1 else 0.0
        units, method = n, "normal"
    else:
        _, gi = np.unique(g, return_inverse=True)
        G = int(gi.max()) + 1
        tot = np.bincount(gi, weights=x, minlength=G)
        cnt = np.bincount(gi, minlength=G)
        var = G / (G - 1.0) * float(((tot - m * cnt) ** 2).sum()) / n ** 2 if G > 1 else 0.0
        units, method = G, "normal (cluster-robust)"
    return _normal_estimate(m, var, units, confidence, method, statistic, null=null, lo=lo, hi=hi,
                            notes=_one_cluster_note(groups))


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
        return _normal_estimate(float(np.mean(aucs)), var, G, confidence, "delong (influence)" + (
            ", clustered" if g is not None else ""), "macro_auroc", null=0.5,
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
    import dataclasses

    return dataclasses.replace(est, statistic="macro_auroc")


def paired_difference(a: Any, b: Any, groups: Sequence[Any] | None = None, *, ci: str = "normal",
                      n_resamples: int = 2000, seed: int = 0, statistic: str = "mean_difference",
                      confidence: float = 0.95) -> Estimate:
    """CI of ``mean(a) - mean(b)`` over the same units (paired). ``ci="normal"`` (default):
    the standard error of the per-unit differences, cluster-robust when ``groups`` cluster;
    ``"bootstrap"``: resample units (clusters) with both values together."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if ci == "normal":
        return _mean_estimate(a - b, groups, confidence, statistic, -np.inf, np.inf, null=0.0)

    def diff(x, y, axis=-1):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    import dataclasses

    est = bootstrap((a, b), diff, groups=list(np.asarray(groups)) if _has_clusters(groups) else None,
                    n_resamples=n_resamples, seed=seed, vectorized=True, confidence=confidence)
    return dataclasses.replace(est, statistic=statistic)


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
    var_test = float(_delong_variance(v10.mean(0), v01.mean(0), np.asarray(m), y, g))
    S = D.shape[0]
    var_between = float(auc.var(ddof=1)) / S if S > 1 else 0.0
    units = int(np.unique(g).size) if g is not None else y.size
    return _normal_estimate(m, var_test + var_between, units, confidence,
                            "delong" + (" (clustered, Obuchowski)" if g is not None else "") + " + between-draw",
                            statistic, null=0.5,
                            notes=(f"mean over {S} score vectors (AUROC range {auc.min():.3f}-{auc.max():.3f})",))
