"""Discrimination: AUROC with a class-stratified bootstrap or a DeLong interval, clustered when examples
come in clusters (Obuchowski 1997).

DeLong et al. (1988) from placement values (fast midrank form, Sun & Xu 2014): each positive's fraction of
negatives scored lower (ties 1/2), each negative's fraction of positives scored higher. With clusters
(contrastive pairs, several prompts per topic) the placements are summed per cluster and the variance is
Obuchowski's (1997, "Nonparametric analysis of clustered ROC curve data", Biometrics 53:567), so correlated
examples are not counted as independent.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from workbench.stats._base import (
    _NORMAL,
    StatsError,
    _check_confidence,
    _check_not_constant,
    _check_same_length,
    _float_1d,
    _rankdata,
    _rngs,
    _z,
)
from workbench.stats.estimate import Estimate
from workbench.stats.resampling import _resample, bootstrap

__all__ = ["auroc", "auroc_difference", "auroc_rows", "delong_placements", "delong_variance", "IndexedAUROC"]


def _binary_labels(labels: Any, pos_label: Any) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise StatsError(f"labels must be 1-D; got shape {lab.shape}.")
    if lab.dtype.kind == "f" and np.isnan(lab).any():
        raise StatsError("labels contain NaN; drop those units first.")
    values = np.unique(lab)
    if values.size > 2:
        raise StatsError(f"AUROC needs binary labels; got {values.size} distinct labels {values[:5].tolist()}.")
    if pos_label is None:
        as_set = set(values.tolist())
        if lab.dtype == bool or as_set <= {0, 1} or as_set <= {-1, 1}:
            pos_label = 1
        else:
            raise StatsError(f"labels are {sorted(as_set, key=str)!r}; pass pos_label= to say which is positive.")
    if values.size < 2:
        only = values[0].item() if hasattr(values[0], "item") else values[0]
        raise StatsError(
            f"AUROC needs both classes; got only label {only!r} (n={lab.size}). Add units of the "
            f"other class."
        )
    if pos_label not in set(values.tolist()):
        raise StatsError(f"pos_label={pos_label!r} is not among the labels {values.tolist()!r}.")
    return lab == pos_label


def auroc_rows(scores: Any, labels: Any) -> np.ndarray:
    """Rank AUROC along the last axis (ties count 1/2; equals scikit-learn's ``roc_auc_score``); NaN where a row
    lacks a class. Vectorised over leading axes (layers, bootstrap resamples); no validation, no interval."""
    s = np.asarray(scores, float)
    lab = np.broadcast_to(np.asarray(labels).astype(bool), s.shape)
    r = _rankdata(s)
    npos = lab.sum(-1)
    nneg = lab.shape[-1] - npos
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((r * lab).sum(-1) - npos * (npos + 1) / 2.0) / (npos * nneg)
    return np.where((npos > 0) & (nneg > 0), out, np.nan)


def delong_placements(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong placement values along the last axis: ``V10`` per positive (fraction of negatives scored lower,
    ties 1/2) and ``V01`` per negative (fraction of positives scored higher), and the AUROC
    (``mean(V10) = mean(V01)``). ``scores [..., n]``, ``labels [n]`` (truthy = positive); returns
    ``V10 [..., n1]``, ``V01 [..., n0]``, ``auc [...]``."""
    s = np.asarray(scores, float)
    lab = np.asarray(labels).astype(bool)
    pos, neg = s[..., lab], s[..., ~lab]
    n1, n0 = pos.shape[-1], neg.shape[-1]
    r_all = _rankdata(s)
    v10 = (r_all[..., lab] - _rankdata(pos)) / n0
    v01 = 1.0 - (r_all[..., ~lab] - _rankdata(neg)) / n1
    return v10, v01, v10.mean(-1)


def delong_variance(v10: np.ndarray, v01: np.ndarray, auc: Any, labels: Any,
                    groups: Any = None) -> np.ndarray:
    """Variance of the AUROC from its placements (last axis; see :func:`delong_placements`).

    Without ``groups``: DeLong's ``var(V10)/n1 + var(V01)/n0``. With a cluster id per example: Obuchowski's
    (1997) clustered form: placement sums per cluster, the ``S10`` and ``S01`` terms and their covariance
    ``S11`` across clusters (``G / (G - 1)`` small-sample factor). With singleton clusters it is DeLong's up to
    the ``(G-1)/G`` vs ``(n-1)`` factors."""
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


def _delong(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AUROC and its DeLong (1988) standard error, via midranks (Sun & Xu 2014)."""
    lab = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    v10, v01, auc = delong_placements(np.concatenate([pos, neg]), lab)
    var = float(delong_variance(v10, v01, auc, lab))
    return float(auc), math.sqrt(max(var, 0.0))


class IndexedAUROC:
    """Mean AUROC of ``Q`` fixed score vectors on resamples given as index arrays: a vectorised statistic for
    :func:`~workbench.stats.bootstrap` (``bootstrap(np.arange(n), IndexedAUROC(scores, labels),
    vectorized=True, groups=...)``).

    Each score vector is sorted once; a resample is turned into per-example counts, and the Mann-Whitney
    statistic is accumulated over tie groups in sorted order: O(resamples x n) per vector instead of a sort per
    resample. NaN for a resample that lacks a class."""

    def __init__(self, scores: Any, labels: Any):
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


def _cluster_codes(groups: Any, n: int) -> np.ndarray | None:
    """Cluster index per example, or None when every example is its own cluster (nothing to cluster)."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.size != n:
        raise StatsError(f"groups must give one cluster id per example; got {g.size} ids for {n} examples.")
    _, gi = np.unique(g, return_inverse=True)
    G = int(gi.max()) + 1
    if G == n:
        return None
    if G < 2:
        raise StatsError(
            f"every example is in one cluster (n={n}); a clustered interval needs at least 2 clusters. Evaluate on "
            f"more groups (topics, templates), or pass groups=None to treat the examples as independent."
        )
    return gi


def auroc(
    scores: Any,
    labels: Any,
    *,
    pos_label: Any = None,
    groups: Sequence[Any] | None = None,
    confidence: float = 0.95,
    ci_method: str = "bootstrap",
    n_resamples: int = 2000,
    seed: int | None = 0,
) -> Estimate:
    """Area under the ROC curve, rank-based (Mann-Whitney U / (n_pos n_neg), ties count 1/2).

    Equal to ``sklearn.metrics.roc_auc_score``. The interval is a bootstrap **stratified by
    class** (each class resampled separately, so every resample has both) or, with
    ``ci_method="delong"``, the normal interval AUROC +- z SE clipped to [0, 1].

    ``stderr`` is always the DeLong et al. (1988) standard error; ``p_value`` is the two-sided
    DeLong z-test of AUROC = 0.5 (None when SE is 0, e.g. perfect separation).

    ``groups`` (a cluster id per example: contrastive pairs, prompts of one topic): the standard error and
    p-value are Obuchowski's (1997) clustered DeLong, and the bootstrap resamples clusters (``n`` is then the
    number of clusters). Groups where every example is alone change nothing; a single cluster is an error.

    Raises StatsError for a single class ("AUROC needs both classes; got only label 1 (n=12)"),
    fewer than 2 units in a class, constant scores, NaN, or mismatched lengths.
    """
    confidence = _check_confidence(confidence)
    s = _float_1d(scores, "scores", allow_inf=True)
    is_pos = _binary_labels(labels, pos_label)
    n = _check_same_length(scores=s, labels=is_pos)
    pos, neg = s[is_pos], s[~is_pos]
    if pos.size < 2 or neg.size < 2:
        raise StatsError(
            f"AUROC with an interval needs at least 2 units of each class; got {pos.size} "
            f"positive and {neg.size} negative. Add units of the smaller class."
        )
    _check_not_constant(s, "scores", "AUROC")
    gi = None if groups is None else _cluster_codes(groups, n)
    if gi is not None:
        return _clustered_auroc(s, is_pos, gi, confidence, ci_method, n_resamples, seed)
    rank_input = _rankdata(s)  # makes +-inf safe
    pos_r, neg_r = rank_input[is_pos], rank_input[~is_pos]
    auc, se = _delong(pos_r, neg_r)
    p_value = _delong_p(auc, se)
    notes: tuple[str, ...] = ()
    boot_rng, _, drawn_seed = _rngs(seed)
    used_seed: int | None = drawn_seed
    if ci_method == "delong":
        lo, hi = _normal_ci(auc, se, confidence)
        method, used_seed = "delong", None
    elif ci_method == "bootstrap":
        ordered = np.concatenate([pos_r, neg_r])
        m, k = pos_r.size, neg_r.size
        strata = [np.arange(m), np.arange(m, m + k)]

        def batch(idx: np.ndarray) -> np.ndarray:
            r = _rankdata(ordered[idx])
            return (r[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * k)

        lo, hi, _, notes = _resample(
            batch, auc, n, n_resamples=n_resamples, confidence=confidence, rng=boot_rng,
            method="percentile", strata_members=strata,
        )
        method = "stratified bootstrap percentile"
    else:
        raise StatsError(f"ci_method must be 'bootstrap' or 'delong'; got {ci_method!r}.")
    return Estimate(
        auc, lo, hi, confidence=confidence, stderr=se, n=n, method=method, seed=used_seed,
        p_value=p_value, statistic="auroc",
        notes=notes + (f"{pos.size} positive, {neg.size} negative; stderr and p-value from DeLong",),
    )


def auroc_difference(scores_a: Any, scores_b: Any, labels: Any, *, pos_label: Any = None,
                     groups: Sequence[Any] | None = None, confidence: float = 0.95) -> Estimate:
    """AUROC(a) - AUROC(b) of two scorers **on the same examples**, with DeLong et al.'s (1988) test for correlated
    ROC curves: the difference's variance is the DeLong variance of the differenced placements
    (``V10_a - V10_b``, ``V01_a - V01_b``), so it counts the covariance of the two AUROCs (clustered, Obuchowski,
    with ``groups``). Normal interval (clipped to [-1, 1]); ``p_value``: two-sided test of no difference.

    Comparing the two AUROCs' separate intervals ("a's interval wholly above b's") ignores that covariance and is
    far more conservative; this is the test to use for a probe against a baseline scored on the same set."""
    confidence = _check_confidence(confidence)
    a = _float_1d(scores_a, "scores_a", allow_inf=True)
    b = _float_1d(scores_b, "scores_b", allow_inf=True)
    is_pos = _binary_labels(labels, pos_label)
    n = _check_same_length(scores_a=a, scores_b=b, labels=is_pos)
    n1 = int(is_pos.sum())
    if n1 < 2 or n - n1 < 2:
        raise StatsError(f"an AUROC difference needs at least 2 units of each class; got {n1} positive and {n - n1} "
                         "negative. Add units of the smaller class.")
    gi = None if groups is None else _cluster_codes(groups, n)
    va10, va01, auc_a = delong_placements(_rankdata(a), is_pos)
    vb10, vb01, auc_b = delong_placements(_rankdata(b), is_pos)
    d = float(auc_a) - float(auc_b)
    var = float(delong_variance(va10 - vb10, va01 - vb01, d, is_pos, gi))
    se = math.sqrt(max(var, 0.0))
    h = _z(confidence) * se
    p = 2.0 * (1.0 - _NORMAL.cdf(abs(d / se))) if se > 0 else None
    return Estimate(d, max(-1.0, d - h), min(1.0, d + h), confidence=confidence, stderr=se,
                    n=n if gi is None else int(gi.max()) + 1, method="delong paired" + ("" if gi is None else
                                                                                      " (clustered, Obuchowski)"),
                    p_value=p, statistic="auroc_difference",
                    notes=(f"{n1} positive, {n - n1} negative; both scorers on the same examples",))


def _delong_p(auc: float, se: float) -> float | None:
    if se > 0:
        return 2.0 * (1.0 - _NORMAL.cdf(abs((auc - 0.5) / se)))
    return None


def _normal_ci(auc: float, se: float, confidence: float) -> tuple[float, float]:
    h = _z(confidence) * se
    return max(0.0, auc - h), min(1.0, auc + h)


def _clustered_auroc(s: np.ndarray, is_pos: np.ndarray, gi: np.ndarray, confidence: float, ci_method: str,
                     n_resamples: int, seed: int | None) -> Estimate:
    v10, v01, auc_a = delong_placements(s, is_pos)
    auc = float(auc_a)
    se = math.sqrt(max(float(delong_variance(v10, v01, auc_a, is_pos, gi)), 0.0))
    p_value = _delong_p(auc, se)
    G = int(gi.max()) + 1
    counts = f"{int(is_pos.sum())} positive, {int((~is_pos).sum())} negative in {G} clusters"
    if ci_method == "delong":
        lo, hi = _normal_ci(auc, se, confidence)
        return Estimate(auc, lo, hi, confidence=confidence, stderr=se, n=G, method="delong (clustered, Obuchowski)",
                        p_value=p_value, statistic="auroc", notes=(counts,))
    if ci_method != "bootstrap":
        raise StatsError(f"ci_method must be 'bootstrap' or 'delong'; got {ci_method!r}.")
    boot = bootstrap(np.arange(s.size), IndexedAUROC(s, is_pos), groups=list(gi), n_resamples=n_resamples,
                     seed=seed, confidence=confidence, vectorized=True)
    return Estimate(auc, boot.ci_low, boot.ci_high, confidence=confidence, stderr=se, n=G,
                    method="cluster bootstrap percentile", seed=boot.seed, p_value=p_value, statistic="auroc",
                    notes=boot.notes + (counts, "stderr and p-value: clustered DeLong"))
