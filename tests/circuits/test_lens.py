"""Logit lens, folding and direct logit attribution."""

from __future__ import annotations

import pytest
import torch

from circuits import direct_logit_attribution, fold_unembed, logit_lens


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
def test_folded_lens_equals_raw_lens(tiny_model, arch):
    model = tiny_model(arch, "tl")
    prompts = ["hello world", "abc"]
    raw = logit_lens(model, prompts, targets="o", k=3)
    folded = logit_lens(model, prompts, targets="o", k=3, coordinates="folded")
    m = raw.mask
    assert torch.allclose(raw.kl[:, m], folded.kl[:, m], atol=1e-4)
    assert torch.equal(raw.topk_ids[:, m], folded.topk_ids[:, m])
    # the folded unembedding reproduces unembed(final_norm(h)) for arbitrary residual vectors
    h = torch.randn(7, model.facts.d_model) * 3
    assert torch.allclose(fold_unembed(model).logits(h), model.unembed(h).float(), atol=1e-4)


def test_lens_values_by_hand(tiny_model):
    model = tiny_model("llama", "nnsight")
    res = logit_lens(model, "hello", targets="l", k=4)
    _, cache = model.run_with_cache("hello", ["resid_post.0", "resid_post.1"])
    final = model.forward("hello")[0].float().log_softmax(-1).cpu()
    lens0 = model.unembed(cache["resid_post.0"][0]).float().log_softmax(-1).cpu()
    kl = (final.exp() * (final - lens0)).sum(-1)
    assert torch.allclose(res.kl[1, 0], kl, atol=1e-5)
    assert torch.allclose(res.topk_probs[1, 0], lens0.exp().topk(4, -1).values, atol=1e-6)
    t = model.tokenizer("l", add_special_tokens=False)["input_ids"][0]
    assert torch.allclose(res.target_prob[1, 0], lens0.exp()[:, t], atol=1e-6)
    assert res.target_rank[1, 0].tolist() == (lens0 > lens0[:, t:t + 1]).sum(-1).tolist()
    # the last stage is the model's output: KL 0 and perfect agreement
    assert res.kl[-1].abs().max() < 1e-5 and bool((res.top1_agree[-1] == 1).all())
    df = res.to_dataframe()
    assert len(df) == 3 * 5 and {"kl", "top1_agree", "target_prob", "target_rank", "topk"} <= set(df.columns)
    assert res.provenance.model_hash == model.weights_hash


def test_summary_has_intervals(tiny_model):
    model = tiny_model("gpt2", "tl")
    res = logit_lens(model, ["hello world", "abc", "xyz w", "the cat"])
    s = res.summary_table()
    assert list(s["stage"]) == ["embed", "0", "1"]
    assert (s["kl_ci_low"] <= s["kl"] + 1e-12).all() and (s["kl"] <= s["kl_ci_high"] + 1e-12).all()
    assert (s["n_prompts"] == 4).all()


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
def test_dla_decomposes_the_logit_exactly(tiny_model, arch):
    model = tiny_model(arch, "tl")
    res = direct_logit_attribution(model, ["hello world", "abc de"], "o", "x")
    assert res.residual_error < 1e-4
    logits = model.forward(["hello world", "abc de"], logits="last").float().cpu()
    o, x = (model.tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in ("o", "x"))
    assert torch.allclose(res.total, logits[:, o] - logits[:, x], atol=1e-4)
    # heads decompose each attention layer's write (up to the attention output bias, where there is one)
    names = res.components
    for L in range(model.n_layers):
        attn = res.values[names.index(f"attn.{L}")]
        heads = res.head_values[L].sum(0)
        if getattr(model.layer_module(L, "o"), "bias", None) is None:  # llama: no output bias
            assert torch.allclose(attn, heads, atol=1e-4)
        else:  # GPT-2 / NeoX: the difference is the output bias's direct effect, the same for both prompts' heads
            assert not torch.allclose(attn, heads, atol=1e-4)
    df = res.to_dataframe()
    assert {"embed", "attn", "mlp", "head", "bias"} <= set(df["kind"])


@pytest.mark.smollm
def test_paris_rises_in_late_layers(smollm):
    """The logit lens on "The capital of France is": p(" Paris") at the last token rises in the late layers."""
    res = logit_lens(smollm, "The capital of France is", targets=" Paris", k=5)
    p = res.target_prob[:, 0, -1]
    rank = res.target_rank[:, 0, -1]
    N = smollm.n_layers
    assert int(res.topk_ids[-1, 0, -1, 0]) == smollm.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    assert p[: N // 2].max() < 0.05 < p[-1]          # absent in the first half of the network
    assert float(p[-4:].min()) > float(p[: N - 6].max())  # highest in the last layers
    assert int(rank[-1]) == 0 and int(rank[N // 2]) > 0
