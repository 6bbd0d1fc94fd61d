"""Attribution patching: first-order exactness, the AtP* corrections, agreement with exact patching."""

from __future__ import annotations

import pytest
import torch

from circuits import LogitDiff, attribution_agreement, attribution_patching, patching_sweep
from circuits.attribution import _pattern_from
from workbench.interventions import custom, replace

CLEAN = ["a cat sat", "a dog ran"]
CORRUPT = ["a cow sat", "a dog run"]


def _metric():
    return LogitDiff([ord("a"), ord("b")], [ord("c"), ord("d")])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_atp_is_the_first_order_term(tiny_model, arch):
    """For a patch scaled by eps, (M(eps) - M(0)) / eps -> the AtP estimate (finite differences)."""
    model = tiny_model(arch, "tl")
    metric = _metric()
    atp = attribution_patching(model, CLEAN, CORRUPT, "head", metric=metric)
    ct, xt = model.tokenize(CLEAN), model.tokenize(CORRUPT)
    _, cc = model.run_with_cache(ct, ["z.1"])
    _, xc = model.run_with_cache(xt, ["z.1"])
    base = metric(model.forward(xt, logits="last"), torch.arange(2))
    eps = 1e-3
    for h in range(model.facts.n_heads):
        dz = cc["z.1"] - xc["z.1"]

        def fn(x, mask, dz=dz, h=h):
            y = x.clone()
            y[:, :, h] = y[:, :, h] + eps * dz[:, :, h]
            return y
        m_eps = metric(model.forward(xt, interventions=custom("z.1", fn), logits="last"), torch.arange(2))
        fd = ((m_eps - base) / eps).cpu()
        assert torch.allclose(atp.values[1, h], fd, atol=2e-2, rtol=2e-2), (h, atp.values[1, h], fd)


def test_resid_nodes_last_layer_final_position_exact(tiny_model):
    """resid_post nodes: AtP values are (a_clean - a_corrupt) . grad; the node shape is [layer, pos]."""
    model = tiny_model("llama", "tl")
    res = attribution_patching(model, CLEAN, CORRUPT, "resid_pre", metric=_metric())
    assert res.axes == ("layer", "pos") and res.values.shape == (2, 9, 2)
    # positions 0 and 1 ("a ") are identical in clean and corrupt: zero attribution, exactly
    assert res.values[:, :2].abs().max() == 0
    df = res.to_dataframe()
    assert len(df) == 18 and "attribution" in df


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_pattern_recomputation_matches_model(tiny_model, arch):
    """The QK fix recomputes softmax(q k^T) from canonical (pre-rotary) q and k: it must equal the model's own
    pattern, also after a query patch (checked against a real patched forward)."""
    model = tiny_model(arch, "tl")
    ct, xt = model.tokenize(CLEAN), model.tokenize(CORRUPT)
    _, c = model.run_with_cache(xt, ["q.1", "k.1", "pattern.1"])
    _, cc = model.run_with_cache(ct, ["q.1"])
    B, T = xt.shape
    pos = torch.arange(T).expand(B, T)
    A = _pattern_from(model, c["q.1"], c["k.1"], pos)
    assert torch.allclose(A, c["pattern.1"].float(), atol=1e-5)
    q2 = c["q.1"].clone()
    q2[:, :, 2] = cc["q.1"][:, :, 2]
    _, patched = model.run_with_cache(xt, ["pattern.1"], interventions=replace("q.1", cc["q.1"], heads=[2]))
    assert torch.allclose(_pattern_from(model, q2, c["k.1"], pos), patched["pattern.1"].float(), atol=1e-5)


def test_qk_fix_and_graddrop(tiny_model):
    model = tiny_model("llama", "tl")
    metric = _metric()
    plain = attribution_patching(model, CLEAN, CORRUPT, "q", metric=metric)
    fixed = attribution_patching(model, CLEAN, CORRUPT, "q", metric=metric, qk_fix=True)
    keys = attribution_patching(model, CLEAN, CORRUPT, "k", metric=metric, qk_fix=True)
    assert plain.values.shape == fixed.values.shape == (2, 4, 2) and keys.values.shape == (2, 2, 2)
    assert fixed.method["qk_fix"] and not torch.allclose(plain.values, fixed.values)
    # GradDrop: nodes in the last layer see every dropped layer except their own unchanged, so
    # GD = (N - 1) |AtP| / (N - 1) = |AtP| exactly there
    gd = attribution_patching(model, CLEAN, CORRUPT, "head", metric=metric, graddrop=True)
    atp = attribution_patching(model, CLEAN, CORRUPT, "head", metric=metric)
    assert torch.allclose(gd.values[-1], atp.values[-1].abs(), atol=1e-6)
    assert bool((gd.values >= 0).all())
    with pytest.raises(ValueError, match="qk_fix"):
        attribution_patching(model, CLEAN, CORRUPT, "head", metric=metric, qk_fix=True)


def test_agreement_report(tiny_model):
    model = tiny_model("gpt2", "tl")
    metric = _metric()
    atp = attribution_patching(model, CLEAN, CORRUPT, "head", metric=metric)
    exact = patching_sweep(model, CLEAN, CORRUPT, "z", metric=metric)
    rep = attribution_agreement(atp, exact, k=3, label="tiny")
    assert -1 <= rep.spearman.value <= 1 and rep.spearman.ci_low <= rep.spearman.value <= rep.spearman.ci_high
    assert rep.n_nodes == 8 and rep.n_prompts == 2 and len(rep.exact_top) == 3
    full = attribution_agreement(atp, exact, k=8)
    assert full.recall_at_k.value == 1.0  # every node is in the top-8 of 8
    # an estimate that *is* the exact effect agrees perfectly
    perfect = type(atp)(**{**atp.__dict__, "values": exact.values - exact.corrupt_value})
    rep2 = attribution_agreement(perfect, exact, k=3)
    assert rep2.spearman.value == pytest.approx(1.0) and rep2.recall_at_k.value == 1.0
    assert "spearman" in set(rep.to_dataframe()["statistic"])
    with pytest.raises(ValueError, match="differ"):
        attribution_agreement(attribution_patching(model, CLEAN, CORRUPT, "attn_out", metric=metric), exact)
