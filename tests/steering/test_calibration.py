"""Calibration: residual norms by hand, KL by hand, matched strength reaches its target."""

import numpy as np
import pytest
import torch

from steering import Add, SteeringVector, steer
from steering.calibration import (
    CalibrationError,
    kl_divergence,
    match_strength,
    next_token_kl,
    prompt_kl,
    residual_norms,
)
from workbench.sites import Site

PROMPTS = ["hello there", "how do plants grow?", "tell me a story about a cat", "what is two plus two"]


def test_residual_norms_by_hand(tiny_model):
    m = tiny_model("llama")
    res = residual_norms(m, PROMPTS, [0, 1], skip_first=1)
    for L in (0, 1):
        per = []
        for p in PROMPTS:
            _, c = m.run_with_cache(m.tokenize(p, chat=True), [f"resid_post.{L}"])
            per.append(float(c[f"resid_post.{L}"][0, 1:].norm(dim=-1).mean()))
        est = res.estimates[Site("resid_post", L)]
        assert est.value == pytest.approx(np.mean(per), rel=1e-5)
        assert est.ci_low <= est.value <= est.ci_high and est.n == 4
        assert res.norm(L) == res[f"resid_post.{L}"] == est.value
    assert list(res.to_dataframe().layer) == [0, 1]
    with pytest.raises(CalibrationError, match="no residual norm for resid_post.5"):
        res.norm("resid_post.5")


def test_kl_by_hand_and_zero_without_steering(tiny_model):
    m = tiny_model("llama")
    p = torch.tensor([[0.0, 1.0, 2.0]])
    q = torch.tensor([[2.0, 1.0, 0.0]])
    P, Q = p.softmax(-1)[0], q.softmax(-1)[0]
    assert kl_divergence(p, q)[0] == pytest.approx(float((P * (P / Q).log()).sum()), rel=1e-6)
    assert np.allclose(next_token_kl(m, PROMPTS), 0.0, atol=1e-7)
    v = torch.randn(m.facts.d_model) * 5
    op = Add("resid_post.0", v, positions="all")
    kl = next_token_kl(m, PROMPTS, [op])
    base = m.forward(m.tokenize(PROMPTS, chat=True), logits="last")
    with steer(m, op):
        new = m.forward(m.tokenize(PROMPTS, chat=True), logits="last")
    assert np.allclose(kl, kl_divergence(base, new), rtol=1e-5) and (kl > 0).all()
    assert (prompt_kl(m, "You are a pirate. Speak like one.", PROMPTS) > 0).all()


def test_matched_strength_reaches_the_target_and_ignores_vector_scale(tiny_model):
    m = tiny_model("llama")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m.facts.d_model, generator=g)
    b = torch.randn(m.facts.d_model, generator=g)
    vecs = {"a": SteeringVector({Site("resid_post", 0): a}, "x"),
            "a_x10": SteeringVector({Site("resid_post", 0): 10 * a}, "x"),
            "b": SteeringVector({Site("resid_post", 0): b}, "x")}
    sm = match_strength(m, vecs, PROMPTS, layer=0, target=0.05, rtol=0.02)
    df = sm.to_dataframe()
    assert set(df.label) == {"a", "a_x10", "b"}
    for r in sm.rows:
        assert r["achieved"].value == pytest.approx(0.05, rel=0.02)
    # KL depends on what is added, not on the vector's own scale
    assert sm.row("a")["norm"] == pytest.approx(sm.row("a_x10")["norm"], rel=1e-6)
    assert sm.row("a")["multiplier"] == pytest.approx(10 * sm.row("a_x10")["multiplier"], rel=1e-6)
    # the matched operator, applied through a full forward, gives the target KL
    for label in ("a", "b"):
        kl = next_token_kl(m, PROMPTS, [sm.operator(label, vecs[label])])
        assert kl.mean() == pytest.approx(0.05, rel=0.03)
    with pytest.raises(CalibrationError, match="lower the target"):
        match_strength(m, {"a": vecs["a"]}, PROMPTS, layer=0, target=1e6)


def test_matched_shift_on_a_reference_measure(tiny_model):
    m = tiny_model("llama")
    tok = 65

    def logit_of_A(model):
        return model.forward(model.tokenize(PROMPTS, chat=True), logits="last")[:, tok].cpu().numpy()

    # steer along the direction that raises that logit most at the last layer's input
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(1))
    base = logit_of_A(m)
    with steer(m, Add("resid_post.0", v, 3.0)):
        sign = 1.0 if logit_of_A(m).mean() > base.mean() else -1.0
    sm = match_strength(m, {"v": SteeringVector({Site("resid_post", 0): v}, "x")}, layer=0, target=0.5,
                        measure=logit_of_A, sign=sign, rtol=0.02)
    assert sm.row("v")["achieved"].value == pytest.approx(0.5, rel=0.02) and sm.measure == "logit_of_A"
