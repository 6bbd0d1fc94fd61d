import numpy as np
import pytest

from probe.splits import SplitError, check_no_leak, group_kfold, train_test_split


def test_group_split_keeps_groups_whole_and_stratifies():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 3)
    y = rng.integers(0, 2, 300)
    tr, te = train_test_split(y, groups, test_size=0.25, seed=1)
    check_no_leak(tr, te, groups)
    assert not set(groups[tr]) & set(groups[te])
    assert 0.15 < te.mean() < 0.35
    assert abs(y[te].mean() - y.mean()) < 0.1


def test_group_kfold_partitions_every_example_once():
    y = np.tile([0, 1], 50)
    g = np.arange(100) // 4
    folds = group_kfold(y, g, 5, seed=0)
    cover = np.sum([te for _, te in folds], axis=0)
    assert np.all(cover == 1)
    for tr, te in folds:
        check_no_leak(tr, te, g)


def test_single_class_error_names_the_problem():
    with pytest.raises(SplitError, match="at least two classes"):
        train_test_split(np.ones(20, int), None)


def test_leak_detected():
    g = np.array([0, 0, 1, 1])
    with pytest.raises(SplitError, match="both train and test"):
        check_no_leak(np.array([1, 0, 1, 0], bool), np.array([0, 1, 0, 1], bool), g)
