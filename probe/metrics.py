"""Probe metrics with uncertainty, reported through :mod:`workbench.stats`.

- :func:`auroc_estimate`: AUROC with a stratified bootstrap CI and the DeLong stderr and
  p-value (``workbench.stats.auroc``); when examples come in clusters (contrastive pairs,
  several prompts per topic) the CI is a cluster bootstrap over the clusters instead, because
  examples of one cluster are not independent.
- :func:`accuracy_estimate`: Wilson interval, or a cluster bootstrap with groups.
- :func:`macro_auroc_estimate`: one-vs-rest macro AUROC for more than two classes.
- :func:`paired_difference`: bootstrap CI of a mean difference over the same examples
  (selectivity, Hewitt & Liang 2019; score shift between framings).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.stats import Estimate, StatsError, auroc, bootstrap, proportion

__all__ = ["auroc_estimate", "accuracy_estimate", "macro_auroc_estimate", "paired_difference", "auc_rows",
           "analytic_auroc_gaussian"]

#: Above this many examples the AUROC interval is DeLong's normal interval (a bootstrap over
#: tens of thousands of examples costs seconds per layer and agrees with it).
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


def auroc_estimate(scores: Any, labels: Any, groups: Sequence[Any] | None = None, *, ci: str = "auto",
                   n_resamples: int = 2000, seed: int = 0, confidence: float = 0.95) -> Estimate:
    """AUROC of ``scores`` for binary ``labels`` (1 = positive) with a confidence interval.

    ``ci``: ``"bootstrap"`` (stratified by class; a cluster bootstrap when ``groups`` has
    clusters), ``"delong"``, or ``"auto"`` (bootstrap up to 4000 examples, DeLong above).
    ``stderr`` and ``p_value`` (AUROC = 0.5) are DeLong's in every case; with clusters they
    ignore the clustering (noted), the interval does not.
    """
    s = np.asarray(scores, float)
    y = np.asarray(labels).astype(int)
    if ci == "auto":
        ci = "bootstrap" if s.size <= AUTO_BOOTSTRAP_MAX_N else "delong"
    if ci == "delong" or not _has_clusters(groups):
        return auroc(s, y, pos_label=1, ci_method="delong" if ci == "delong" else "bootstrap",
                     n_resamples=n_resamples, seed=seed, confidence=confidence)
    base = auroc(s, y, pos_label=1, ci_method="delong", confidence=confidence)
    boot = bootstrap(np.arange(s.size), _IndexAUC(s, y), groups=list(np.asarray(groups)), n_resamples=n_resamples,
                     seed=seed, confidence=confidence, vectorized=True)
    return Estimate(base.value, boot.ci_low, boot.ci_high, confidence=confidence, stderr=base.stderr, n=s.size,
                    method="cluster bootstrap percentile", seed=seed, p_value=base.p_value, statistic="auroc",
                    notes=boot.notes + ("stderr and p-value from DeLong (ignoring clusters)",))


def accuracy_estimate(correct: Any, groups: Sequence[Any] | None = None, *, seed: int = 0,
                      n_resamples: int = 2000) -> Estimate:
    """Fraction correct: Wilson interval, or cluster bootstrap over ``groups`` when they cluster."""
    c = np.asarray(correct).astype(float)
    if _has_clusters(groups):
        return proportion(c, groups=list(np.asarray(groups)), seed=seed, n_resamples=n_resamples)
    return proportion(c)


def macro_auroc_estimate(probs: Any, labels: Any, groups: Sequence[Any] | None = None, *, n_resamples: int = 1000,
                         seed: int = 0) -> Estimate:
    """One-vs-rest macro AUROC of class probabilities ``[n, K]`` (bootstrap CI over examples,
    clusters when ``groups`` cluster)."""
    P = np.asarray(probs, float)
    y = np.asarray(labels).astype(int)
    K = P.shape[1]
    if np.unique(y).size < 2:
        raise StatsError(f"macro AUROC needs at least two classes in the evaluated labels; got {np.unique(y)}")

    def stat(p, lab, axis=-1):
        p = np.asarray(p)
        lab = np.asarray(lab)
        if p.ndim == 2:
            return np.nanmean([auc_rows(p[:, k], lab == k) for k in range(K)])
        vals = np.stack([auc_rows(p[..., k], lab == k) for k in range(K)], -1)
        with np.errstate(all="ignore"):
            return np.where(np.isnan(vals).all(-1), np.nan, np.nanmean(np.where(np.isnan(vals), np.nan, vals), -1))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        est = bootstrap((P, y), stat, groups=list(np.asarray(groups)) if _has_clusters(groups) else None,
                        n_resamples=n_resamples, seed=seed, vectorized=True)
    import dataclasses

    return dataclasses.replace(est, statistic="macro_auroc")


def paired_difference(a: Any, b: Any, groups: Sequence[Any] | None = None, *, n_resamples: int = 2000,
                      seed: int = 0, statistic: str = "mean_difference") -> Estimate:
    """Bootstrap CI of ``mean(a) - mean(b)`` over the same units (pairs resampled together)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)

    def diff(x, y, axis=-1):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    import dataclasses

    est = bootstrap((a, b), diff, groups=list(np.asarray(groups)) if _has_clusters(groups) else None,
                    n_resamples=n_resamples, seed=seed, vectorized=True)
    return dataclasses.replace(est, statistic=statistic)


def analytic_auroc_gaussian(separation: float, sigma: float = 1.0) -> float:
    """AUROC of the optimal linear score when ``x = noise + y * s * u`` (isotropic Gaussian noise
    of std ``sigma``, ``|u| = 1``): the projection on ``u`` differs by ``s`` between classes
    with std ``sigma`` in each, so AUROC = Phi(s / (sigma * sqrt(2)))."""
    from statistics import NormalDist

    return NormalDist().cdf(separation / (sigma * np.sqrt(2.0)))


def mean_auroc_estimate(scores: Any, labels: Any, groups: Sequence[Any] | None = None, *, n_resamples: int = 2000,
                        seed: int = 0, statistic: str = "mean_auroc") -> Estimate:
    """Mean AUROC of several score vectors ``[S, n]`` on the same examples (e.g. probes trained on
    ``S`` label shuffles, or ``S`` random directions), with a bootstrap CI over examples
    (clusters when ``groups`` cluster). Averaging over ``S`` draws removes most of the variance
    due to the particular shuffle/direction, so the interval is about the test sample."""
    D = np.asarray(scores, float)
    if D.ndim == 1:
        D = D[None]
    y = np.asarray(labels).astype(int)
    import dataclasses

    est = bootstrap(np.arange(y.size), _IndexAUC(D, y), groups=list(np.asarray(groups)) if _has_clusters(groups) else None,
                    n_resamples=n_resamples, seed=seed, vectorized=True)
    return dataclasses.replace(est, statistic=statistic,
                               notes=est.notes + (f"mean over {D.shape[0]} score vectors",))
