"""Ablations, the ICL score, the rounding rule and the protocol's bookkeeping (on tiny models)."""

from __future__ import annotations

import math

import pytest
import torch

from circuits import (
    copy_task,
    head_ablation,
    icl_score,
    induction_protocol,
    repeated_half_loss,
    rounding_rule,
    top_heads_per_layer,
)


def test_rounding_rule():
    assert rounding_rule(2, 9) == 1 and rounding_rule(2, 4) == 1 and rounding_rule(25, 4) == 1
    assert rounding_rule(30, 9) == 3 and rounding_rule(50, 4) == 2 and rounding_rule(100, 9) == 9
    s = torch.tensor([[0.1, 0.9, 0.2], [0.5, 0.4, 0.6]])
    assert top_heads_per_layer(s, 2) == [(0, 1), (1, 2)]
    assert top_heads_per_layer(s, 60) == [(0, 1), (0, 2), (1, 2), (1, 0)]


def test_ablations_do_what_they_say(tiny_model):
    model = tiny_model("llama", "tl")
    toks = model.tokenize(["hello world", "other text!"], padding_side="left")
    ref = model.tokenize(["abcdefghijk", "lmnopqrstuv"])
    for method in ("zero", "mean", "resample"):
        assert len(head_ablation(model, [(1, 2), (1, 0), (0, 3)], method, reference=ref, seed=0)) == 2  # one per layer
        ivs = head_ablation(model, [(1, 2), (1, 0)], method, reference=ref, seed=0)
        src = ref if method == "resample" else toks
        _, c = model.run_with_cache(src, ["z.1"], interventions=ivs)
        _, c0 = model.run_with_cache(src, ["z.1"])
        z, z0 = c["z.1"], c0["z.1"]
        assert torch.equal(z[:, :, 1], z0[:, :, 1]) and torch.equal(z[:, :, 3], z0[:, :, 3])  # others untouched
        if method == "zero":
            assert z[:, :, 2].abs().max() == 0 and z[:, :, 0].abs().max() == 0
        elif method == "mean":
            _, cr = model.run_with_cache(ref, ["z.1"])
            assert torch.allclose(z[0, 0, 2], cr.real("z.1")[:, 2].mean(0), atol=1e-6)
        else:
            _, cr = model.run_with_cache(ref, ["z.1"])
            assert torch.equal(z[0, :, 2], cr["z.1"][1, :, 2]) and torch.equal(z[1, :, 2], cr["z.1"][0, :, 2])
    with pytest.raises(ValueError, match="reference"):
        head_ablation(model, [(0, 1)], "mean")


def test_icl_score_by_hand(tiny_model):
    model = tiny_model("gpt2", "tl")
    texts = ["abcdefghijklmnopqrstuvwxyz" * 2, "the quick brown fox jumps over the lazy dog!!"]
    res = icl_score(model, texts, early=5, late=30)
    ids = torch.tensor([model.tokenize(t).real_tokens(0)[:31] for t in texts])
    lp = model.forward(ids).float().log_softmax(-1).cpu()
    loss = -lp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
    assert torch.allclose(res.per_text, loss[:, 29] - loss[:, 4], atol=1e-5)
    assert res.estimate.n == 2 and len(res.to_dataframe()) == 2
    assert res.summary().startswith("ICL score (loss at token 30 minus loss at token 5") and str(res.estimate) in res.summary()
    with pytest.raises(ValueError, match="fewer than"):
        icl_score(model, ["short"], early=5, late=30)


def test_repeated_half_and_protocol_bookkeeping(tiny_model):
    model = tiny_model("neox", "tl")
    prompts, conts = copy_task(model, 3, 10, seed=0)
    # each prompt is a random string s plus its first character; the continuation is the rest of s again
    assert len(prompts) == len(conts) == 3 and all(len(p) == 11 for p in prompts)
    assert all(p + c == p[:-1] * 2 for p, c in zip(prompts, conts))
    assert len(set(prompts)) == 3
    res = induction_protocol(model, k_percent=30, n_random=3, n_seqs=6, half=8, seed=0)
    assert res.heads_per_layer == rounding_rule(30, 4) == 2 and len(res.targeted) == 4
    for hs in res.random_sets:  # matched: the same count per layer, disjoint from the targeted heads
        assert sorted(L for L, _ in hs) == sorted(L for L, _ in res.targeted) and not set(hs) & set(res.targeted)
    e = res.effect_targeted
    assert e.ci_low <= e.value <= e.ci_high and e.n == 6
    assert math.isclose(e.value, float((res.loss_targeted - res.loss_clean).mean()), rel_tol=1e-6)
    b = res.behaviour
    assert b is not None and len(b["random"]) == 3 and b["clean"].aggregate.n == 6
    assert "targeted - random" in res.summary()


def test_repeated_half_loss_by_hand_in_one_forward(tiny_model, monkeypatch):
    from circuits import repeated_random_tokens

    model = tiny_model("llama", "tl")
    half = 6
    toks = repeated_random_tokens(model, 3, half, seed=0)
    ivs = head_ablation(model, [(1, 0)], "zero")
    with torch.inference_mode():
        logits = model.forward(toks, interventions=ivs).float().cpu()
    toks = toks.cpu()
    start = toks.shape[1] - half + 1
    lp = logits[:, :-1].log_softmax(-1).gather(-1, toks[:, 1:, None])[..., 0]
    want_loss = -lp[:, start - 1:].mean(1)
    want_acc = (logits[:, start - 1:-1].argmax(-1) == toks[:, start:]).float().mean(1)
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    loss, acc = repeated_half_loss(model, toks, half, ivs)
    assert len(calls) == 1  # loss and copy accuracy from the same forward pass
    assert torch.allclose(loss.cpu(), want_loss, atol=1e-5) and torch.equal(acc.cpu(), want_acc)


def test_resample_ablation_on_more_rows_than_one_chunk(tiny_model):
    """repeated_half_loss runs in chunks of 16 rows; a resample ablation's per-row values follow the chunks."""
    from circuits import repeated_random_tokens
    from circuits.ablation import _token_losses

    model = tiny_model("llama", "tl")
    toks = repeated_random_tokens(model, 20, 6, seed=0)
    ivs = head_ablation(model, [(1, 0), (0, 2)], "resample", reference=toks, seed=1)
    chunked = _token_losses(model, toks, ivs, batch_size=16)
    whole = _token_losses(model, toks, ivs, batch_size=20)
    assert torch.allclose(chunked, whole, atol=1e-5)
    loss, _ = repeated_half_loss(model, toks, 6, ivs)
    assert loss.shape == (20,)
