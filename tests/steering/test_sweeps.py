"""Sweeps: every cell equals a full steered forward through the shared A/B definition; the
summary statistics by hand; generation sweeps through the generic path."""

import numpy as np
import pytest
import torch

from steering import Add, SteeringVector, build_caa_vectors
from steering.scoring import steered_ab_scores
from steering.sweeps import SweepResult, caa_sweep, generation_sweep, paired_difference, trend
from workbench.scorers import RefusalScorer
from workbench.sites import Site

RECS = [{"question": f"Question number {i}?\n (A) yes\n (B) no", "answer_matching_behavior": "(A)" if i % 2 else "(B)",
         "answer_not_matching_behavior": "(B)" if i % 2 else "(A)"} for i in range(6)]


def test_caa_sweep_cells_equal_full_forwards(tiny_model):
    m = tiny_model("llama")
    v = build_caa_vectors(m, RECS[:4], layers=[0, 1]).scaled(20.0)
    res = caa_sweep(m, {"toy": v}, {"toy": RECS[4:]}, multipliers=[-1, 1], batch_size=1, positions="all")
    assert res.multipliers == [-1.0, 0.0, 1.0] and res.layers == [0, 1] and res.selection_on == "test_items"
    ctrl = v.random_like(0)
    for L in (0, 1):
        for mult in (-1.0, 1.0):
            for kind, vec in (("steer", v), ("random", ctrl)):
                ref = steered_ab_scores(m, RECS[4:], [Add(f"resid_post.{L}", vec.vector(L), mult)]).values
                assert np.allclose(res.values[("toy", L, mult, kind)], ref, atol=1e-5), (L, mult, kind)
        assert np.allclose(res.values[("toy", L, 0.0, "steer")], steered_ab_scores(m, RECS[4:]).values, atol=1e-5)
    df = res.to_dataframe()
    assert len(df) == 2 * 3 * 2 and set(df.kind) == {"steer", "random"}
    assert res.vector_norms[("toy", 0, "random")] == pytest.approx(res.vector_norms[("toy", 0, "steer")], rel=1e-5)
    # layer selection on held-out items
    sel = caa_sweep(m, v, RECS[4:], layers=[0, 1], multipliers=[-1, 1], control=False, select_items=RECS[:2])
    # default positions: the tokens after the instruction (template assistant header + "(")
    toks = m.to_str_tokens(m.tokenize("QQ", chat=True, assistant_prefix="("))
    k = len(toks) - 1 - toks.index("Q", toks.index("Q") + 1)  # tokens after the instruction "QQ"
    assert toks[-k] == "<|im_end|>" and toks[-1] == "("
    ref = steered_ab_scores(m, RECS[4:], [Add("resid_post.1", v.vector(1), 1.0, positions=list(range(-k, 0)))]).values
    assert np.allclose(sel.values[("behaviour", 1, 1.0, "steer")], ref, atol=1e-5)
    assert sel.selection_on == "select_items" and sel.best_layer("behaviour") in (0, 1)
    assert set(sel.selection["behaviour"]) == {0, 1}


def _synthetic():
    rng = np.random.default_rng(0)
    n = 40
    base = rng.uniform(0.3, 0.7, n)
    values = {}
    for m in (-2.0, -1.0, 0.0, 1.0, 2.0):
        values[("b", 3, m, "steer")] = np.clip(base + 0.05 * m + rng.normal(0, 0.01, n), 0, 1)
        values[("b", 3, m, "random")] = base + rng.normal(0, 0.01, n)
        values[("b", 5, m, "steer")] = np.clip(base + 0.01 * m, 0, 1)
        values[("b", 5, m, "random")] = base
    return SweepResult(["b"], [3, 5], [-2.0, -1.0, 0.0, 1.0, 2.0], values), values


def test_summary_statistics_by_hand():
    res, values = _synthetic()
    e = res.effect("b", 3)
    assert e.value == pytest.approx(np.mean(values[("b", 3, 2.0, "steer")] - values[("b", 3, -2.0, "steer")]))
    assert e.excludes(0.0)
    ctrl = res.effect("b", 3, "random")
    assert ctrl.contains(0.0)
    t = res.trend("b", 3)
    vals = np.stack([values[("b", 3, m, "steer")] for m in (-2.0, -1.0, 0.0, 1.0, 2.0)], 1)
    slopes = [np.polyfit([-2, -1, 0, 1, 2], row, 1)[0] for row in vals]
    assert t.value == pytest.approx(np.mean(slopes), rel=1e-9)
    assert res.is_monotone("b", 3) and res.best_layer("b") == 3
    adj = res.adjacent_differences("b", 3)
    assert len(adj) == 4 and all(a.value > 0 for a in adj)
    s = res.behaviour_summary("b")
    assert s["best_layer"] == 3 and s["monotone"] and "control_effect" in s
    assert "best layer 3" in res.report() and "random control" in res.report()
    assert paired_difference(np.array([1.0, np.nan, 3.0]), np.array([0.0, 1.0, 1.0])).value == pytest.approx(1.5)
    assert trend([0, 1], np.array([[0.0, 2.0], [1.0, 1.0]])).value == pytest.approx(1.0)


def test_generation_sweep(tiny_model):
    m = tiny_model("llama")
    v = SteeringVector({Site("resid_post", 1): torch.randn(64, generator=torch.Generator().manual_seed(0))}, "x")
    res = generation_sweep(m, v, ["hi", "hello"], layers=[1], coefficients=[-3, 3], scorer=RefusalScorer(),
                           max_new_tokens=3, batch_size=2)
    assert set(res.scores) == {(1, c, k) for c in (-3.0, 0.0, 3.0) for k in ("steer", "random")}
    assert res.scores[(1, 0.0, "steer")] is res.scores[(1, 0.0, "random")]
    with v.apply(m, 1, 3.0, positions="generated"):
        ref = m.generate(["hi", "hello"], max_new_tokens=3, chat=True).completions
    assert res.completions[(1, 3.0, "steer")] == ref
    assert len(res.to_dataframe()) == 6 and res.estimate(1, 3.0).n == 2
    assert res.summary() == (f"refusal of 2 generations, coefficient 3 minus -3: layer 1: {res.effect(1)} "
                             f"(random control {res.effect(1, 'random')})")
    from steering.plots import plot_generation_sweep

    assert plot_generation_sweep(res).axes
