"""Discrimination: AUROC with a class-stratified bootstrap or a DeLong interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from workbench.stats._base import (_NORMAL, StatsError, _check_confidence, _check_not_constant, _check_same_length,
                                  _float_1d, _rankdata, _rngs, _z)
from workbench.stats.estimate import Estimate
from workbench.stats.resampling import _resample

__all__ = ["auroc"]


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


def _delong(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """AUROC and its DeLong (1988) standard error, via midranks (Sun & Xu 2014)."""
    m, k = pos.size, neg.size
    r_all = _rankdata(np.concatenate([pos, neg]))
    v10 = (r_all[:m] - _rankdata(pos)) / k  # per positive: P(neg < pos) + 0.5 P(tie)
    v01 = 1.0 - (r_all[m:] - _rankdata(neg)) / m  # per negative: P(pos > neg) + 0.5 P(tie)
    auc = float(v10.mean())
    var = float(np.var(v10, ddof=1)) / m + float(np.var(v01, ddof=1)) / k
    return auc, math.sqrt(max(var, 0.0))


def auroc(
    scores: Any,
    labels: Any,
    *,
    pos_label: Any = None,
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
    rank_input = _rankdata(s)  # makes +-inf safe
    pos_r, neg_r = rank_input[is_pos], rank_input[~is_pos]
    auc, se = _delong(pos_r, neg_r)
    p_value = None
    if se > 0:
        z = (auc - 0.5) / se
        p_value = 2.0 * (1.0 - _NORMAL.cdf(abs(z)))
    notes: tuple[str, ...] = ()
    boot_rng, _, used_seed = _rngs(seed)
    if ci_method == "delong":
        h = _z(confidence) * se
        lo, hi = max(0.0, auc - h), min(1.0, auc + h)
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
