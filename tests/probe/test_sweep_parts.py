"""A sweep run one layer at a time (one batch-job task per layer) and merged vs the same sweep in one call.

Planted data: layer L has x = noise + y * s_L * u (s = 0, 0.5, 1): the merged sweep must give every layer's
numbers of the one-call sweep (same C per layer, split, shuffles and random directions), its bootstrapped
headline at the same layer, and survive the JSON round trip exactly.
"""
import json

import numpy as np
import pytest

from probe.sweep import layer_sweep
from probe.sweep_parts import merge_layer_sweeps, sweep_from_dict, sweep_to_dict


def _data(n=400, d=8, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = np.tile([0, 1], n // 2)
    s = np.array([0.0, 0.5, 1.0])
    X = rng.normal(size=(3, n, d)) + y[None, :, None] * s[:, None, None] * u
    groups = np.arange(n) // 2
    templates = (np.arange(n) // 2) % 6
    return X.astype(np.float32), y, groups, templates


@pytest.mark.parametrize("C", [1.0, "cv"])
def test_merged_single_layer_sweeps_equal_one_sweep(C):
    X, y, groups, templates = _data()
    kw = dict(templates=templates, C=C, seed=3, n_resamples=300, device="cpu", methods=("logistic", "mean_diff"))
    whole = layer_sweep({L: X[L] for L in range(3)}, y, groups, **kw)
    parts = [sweep_from_dict(json.loads(json.dumps(sweep_to_dict(
        layer_sweep({L: X[L]}, y, groups, headline_ci="delong", **kw))))) for L in (2, 0, 1)]
    merged = merge_layer_sweeps(parts, groups, n_resamples=300, seed=3)
    assert merged.layers == whole.layers == [0, 1, 2]
    assert merged.settings["C_per_layer"] == whole.settings["C_per_layer"]
    key = lambda s: (s.layer, s.method, s.condition, s.metric)  # noqa: E731
    w = {key(s): s.estimate for s in whole.scores}
    m = {key(s): s.estimate for s in merged.scores}
    assert set(w) == set(m)
    for k in w:  # the same fits, up to float32 noise of a batched solver over one layer vs three
        assert m[k].value == pytest.approx(w[k].value, abs=2e-3), k
        assert m[k].method == w[k].method, k  # bootstrap exactly where the one-call sweep bootstrapped
        assert m[k].ci_low == pytest.approx(w[k].ci_low, abs=2e-2), k
    assert merged.best_layer("logistic") == whole.best_layer("logistic") == 2
    assert merged.choose_layer("logistic").layer == whole.choose_layer("logistic").layer
    for meth in ("logistic", "mean_diff"):
        np.testing.assert_allclose(merged.test_scores[meth], whole.test_scores[meth], atol=2e-3)
        np.testing.assert_allclose(merged.probes[meth][2].coef, whole.probes[meth][2].coef, rtol=1e-2, atol=1e-3)
    assert merged.controls_at_chance("logistic") == whole.controls_at_chance("logistic")


def test_round_trip_is_exact_and_merge_refuses_other_data():
    X, y, groups, templates = _data(n=200)
    a = layer_sweep({0: X[2]}, y, groups, templates=templates, C=1.0, seed=0, n_resamples=100, device="cpu",
                    headline_ci="delong")
    b = sweep_from_dict(json.loads(json.dumps(sweep_to_dict(a))))
    assert sweep_to_dict(b) == sweep_to_dict(a)
    np.testing.assert_array_equal(b.probes["logistic"][0].coef, a.probes["logistic"][0].coef)
    other = layer_sweep({1: X[1]}, y, groups, templates=templates, C=1.0, seed=1, n_resamples=100, device="cpu",
                        headline_ci="delong")
    with pytest.raises(ValueError, match="another split"):
        merge_layer_sweeps([a, other], groups)
    with pytest.raises(ValueError, match="appears twice"):
        merge_layer_sweeps([a, b], groups)
    with pytest.raises(ValueError, match="single-layer"):
        merge_layer_sweeps([layer_sweep({0: X[0], 1: X[1]}, y, groups, C=1.0, device="cpu")], groups)
