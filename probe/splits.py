"""Group-aware train/test splits: no group (template, source, contrastive pair) straddles them.

Probing results leak when near-duplicate prompts sit on both sides of a split: two halves of
a contrastive pair, two fillings of one template, two prompts from one source. Every split
here takes ``groups`` (one id per example) and keeps each group whole on one side. Splits are
stratified by label where that is possible (greedy assignment of whole groups to folds, as in
scikit-learn's ``StratifiedGroupKFold`` but O(groups x folds)), so both classes appear in train
and test.

Conventions: a split is a pair of boolean masks ``(train, test)`` over the examples. Errors
say which class or group is missing and what to do.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from workbench.errors import WorkbenchError

__all__ = ["SplitError", "train_test_split", "group_kfold", "check_no_leak", "as_groups"]


class SplitError(WorkbenchError, ValueError):
    """A split is impossible (one class, too few groups) or leaks groups."""


def as_groups(groups: Sequence[Any] | None, n: int) -> np.ndarray:
    """Groups as an int array of length ``n`` (each example its own group when ``None``),
    numbered in order of first appearance: splits depend on the partition of the examples and
    their order, never on how the ids are spelled (ids 0, 1, 10 and "0", "1", "10" give the
    same split; sorted strings would not)."""
    if groups is None:
        return np.arange(n)
    g = np.asarray(groups)
    if g.ndim != 1 or len(g) != n:
        raise SplitError(f"groups must be 1-D with one id per example ({n}); got shape {g.shape}")
    _, first, inv = np.unique(g.astype(str) if g.dtype == object else g, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inv.reshape(-1)]


def _check_labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise SplitError(f"labels must be 1-D (one per example); got shape {y.shape}")
    classes = np.unique(y)
    if classes.size < 2:
        raise SplitError(
            f"all {y.size} examples have label {classes[0] if classes.size else None!r}: a probe needs at "
            "least two classes. Add examples of the other class (e.g. deploy-like prompts for an "
            "evaluation-awareness probe)."
        )
    return y


def _stratified_group_folds(y: np.ndarray, g: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold id per example: groups whole, class proportions balanced across folds (greedy:
    groups in random order, largest first, each to the fold it brings closest to the target
    class counts). Deterministic for a seed; O(groups x folds)."""
    _, ginv = np.unique(g, return_inverse=True)
    G = int(ginv.max()) + 1
    K = int(y.max()) + 1
    H = np.zeros((G, K))
    np.add.at(H, (ginv, y), 1)
    order = np.random.default_rng(seed).permutation(G)
    order = order[np.argsort(-H[order].sum(1), kind="stable")]
    target = H.sum(0) / k
    F = np.zeros((k, K))
    fold_of = np.empty(G, dtype=np.int64)
    for gi in order:
        cost = np.abs(F + H[gi] - target).sum(1) - np.abs(F - target).sum(1)
        f = int(np.argmin(cost + 1e-9 * F.sum(1)))
        F[f] += H[gi]
        fold_of[gi] = f
    return fold_of[ginv]


def train_test_split(labels: Any, groups: Sequence[Any] | None = None, *, test_size: float = 0.25,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One stratified, group-aware split: ``(train_mask, test_mask)``.

    Groups go whole to one side: ``round(1 / test_size)`` stratified group folds, the first is
    the test set. Raises :class:`SplitError` if either side lacks a class.
    """
    y = _check_labels(labels)
    g = as_groups(groups, len(y))
    if not 0.0 < test_size < 1.0:
        raise SplitError(f"test_size must be in (0, 1); got {test_size}")
    n_groups = np.unique(g).size
    k = max(2, int(round(1.0 / test_size)))
    if n_groups < k:
        raise SplitError(f"a {test_size:.0%} test split needs at least {k} groups; got {n_groups}. "
                         "Use fewer, larger test sets (test_size=0.5) or more groups.")
    yi = np.unique(y, return_inverse=True)[1]
    test = _stratified_group_folds(yi, g, k, seed) == 0
    _check_both_sides(y, ~test, test, "train_test_split")
    return ~test, test


def group_kfold(labels: Any, groups: Sequence[Any] | None, k: int = 5, *, seed: int = 0
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` stratified group folds as ``[(train_mask, test_mask), ...]``; every example is in
    exactly one test fold. ``k`` is capped at the number of groups."""
    y = _check_labels(labels)
    g = as_groups(groups, len(y))
    n_groups = np.unique(g).size
    k = min(int(k), n_groups)
    if k < 2:
        raise SplitError(f"cross-validation over groups needs at least 2 groups; got {n_groups}")
    yi = np.unique(y, return_inverse=True)[1]
    fold = _stratified_group_folds(yi, g, k, seed)
    return [(fold != f, fold == f) for f in range(k) if np.any(fold == f)]


def _check_both_sides(y: np.ndarray, train: np.ndarray, test: np.ndarray, what: str) -> None:
    classes = np.unique(y)
    for name, m in (("train", train), ("test", test)):
        missing = [c for c in classes if not np.any(y[m] == c)]
        if missing:
            raise SplitError(f"{what}: the {name} side has no examples of class(es) {missing}; the groups are "
                             "too few or too unbalanced. Use more groups or a different seed.")


def check_no_leak(train: np.ndarray, test: np.ndarray, groups: Sequence[Any] | None) -> None:
    """Raise :class:`SplitError` if an example is on both sides or a group straddles the split."""
    train, test = np.asarray(train, bool), np.asarray(test, bool)
    if np.any(train & test):
        raise SplitError(f"{int(np.sum(train & test))} examples are in both train and test")
    if groups is None:
        return
    g = as_groups(groups, len(train))
    both = np.intersect1d(g[train], g[test])
    if both.size:
        raise SplitError(f"{both.size} group(s) appear in both train and test (e.g. group index {int(both[0])})")
