"""The two backends agree: tokens, logits, every canonical site, interventions; and they equal a
plain Hugging Face forward (eager attention)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.interventions import add, zero_ablate

PROMPTS = ["The capital of France is", "Hello, my name is John and I like to", "ok"]
ARCHS = ["llama", "gpt2", "neox"]


def _pair(request, arch):
    if arch == "smollm":
        return request.getfixturevalue("smollm"), request.getfixturevalue("smollm_nn")
    tm = request.getfixturevalue("tiny_model")
    return tm(arch, "tl"), tm(arch, "nnsight")


def _hf(model, attn="eager"):
    return AutoModelForCausalLM.from_pretrained(model.source, attn_implementation=attn).eval().to(model.device)


@pytest.mark.parametrize("arch", ARCHS + [pytest.param("smollm", marks=pytest.mark.smollm)])
def test_tokens_identical_and_match_each_library(request, arch):
    tl, nn = _pair(request, arch)
    a, b = tl.tokenize(PROMPTS), nn.tokenize(PROMPTS)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.attention_mask, b.attention_mask)
    for i, p in enumerate(PROMPTS):
        ours = a.real_tokens(i)
        # TransformerLens' own tokenisation under our BOS policy
        assert tl.bridge.to_tokens(p, prepend_bos=tl.prepend_bos)[0].tolist() == ours
        # the tokenizer nnsight uses
        assert nn.nnsight.tokenizer(p, add_special_tokens=nn.prepend_bos)["input_ids"] == ours


@pytest.mark.parametrize("arch", ARCHS + [pytest.param("smollm", marks=pytest.mark.smollm)])
def test_logits_agree_with_each_other_and_with_hf(request, arch):
    tl, nn = _pair(request, arch)
    toks = tl.tokenize(PROMPTS)
    lt, ln = tl.forward(toks), nn.forward(toks)
    real = toks.attention_mask.bool()
    assert (lt - ln)[real].abs().max().item() < 1e-4
    hf = _hf(tl)
    with torch.no_grad():
        ref = hf(toks.input_ids, attention_mask=toks.attention_mask, position_ids=toks.position_ids).logits
    assert (lt - ref)[real].abs().max().item() < 1e-5
    # the nnsight backend runs SDPA by default: its reference is transformers with the same kernel
    hf = _hf(nn, nn.attn_implementation)
    with torch.no_grad():
        ref = hf(toks.input_ids, attention_mask=toks.attention_mask, position_ids=toks.position_ids).logits
    assert (ln - ref)[real].abs().max().item() < 1e-5
    # logits at the last token, computed alone (unpadded), equal the batched left-padded ones
    alone = tl.forward(PROMPTS[2], logits="last")[0]
    assert (alone - tl.forward(toks, logits="last")[2]).abs().max().item() < 1e-4


@pytest.mark.parametrize("arch", ARCHS + [pytest.param("smollm", marks=pytest.mark.smollm)])
def test_every_canonical_site_agrees(request, arch):
    tl, nn = _pair(request, arch)
    toks = tl.tokenize(PROMPTS[:2])
    sites = tl.all_sites()
    _, ct = tl.run_with_cache(toks, sites)
    _, cn = nn.run_with_cache(toks, sites)
    real = toks.attention_mask.bool()
    worst = {}
    for s in sites:
        a, b = ct[s], cn[s]
        assert a.shape == b.shape, s
        if s.kind == "pattern":  # [b, h, q, k]: compare rows of real query positions
            d = (a - b).permute(0, 2, 1, 3)[real]
        else:
            d = (a - b)[real]
        worst[s.name] = d.abs().max().item()
    bad = {k: v for k, v in worst.items() if v >= 1e-4}
    assert not bad, bad
    # the residual stream also equals HF's hidden states
    hf = _hf(tl)
    with torch.no_grad():
        hs = hf(toks.input_ids, attention_mask=toks.attention_mask, position_ids=toks.position_ids,
                output_hidden_states=True).hidden_states
    for L in range(tl.n_layers - 1):  # the last hidden state is after the final norm
        assert (ct[f"resid_post.{L}"] - hs[L + 1])[real].abs().max().item() < 1e-4


def test_canonical_shapes_gqa(tiny_model):
    m = tiny_model("llama")
    f = m.facts
    _, c = m.run_with_cache("abcdef", ["q.0", "k.0", "v.0", "z.0", "pattern.0", "head_out.0", "resid_post.0"])
    assert c["q.0"].shape == (1, 6, f.n_heads, f.d_head)
    assert c["k.0"].shape == (1, 6, f.n_kv_heads, f.d_head) and f.n_kv_heads == 2
    assert c["pattern.0"].shape == (1, f.n_heads, 6, 6)
    assert c["head_out.0"].shape == (1, 6, f.n_heads, f.d_model)
    assert torch.allclose(c["pattern.0"].sum(-1), torch.ones(1, f.n_heads, 6, device=m.device), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS + [pytest.param("smollm", marks=pytest.mark.smollm)])
def test_interventions_agree_across_backends(request, arch):
    tl, nn = _pair(request, arch)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(tl.facts.d_model, generator=g)
    L = tl.n_layers // 2
    ivs = [add(f"resid_post.{L}", v, alpha=3.0), zero_ablate(f"z.{L}", heads=[1])]
    base = tl.forward(PROMPTS)
    a, b = tl.forward(PROMPTS, interventions=ivs), nn.forward(PROMPTS, interventions=ivs)
    real = tl.tokenize(PROMPTS).attention_mask.bool()
    assert (a - base)[real].abs().max() > 0.1  # the intervention does something
    assert (a - b)[real].abs().max().item() < 1e-4


def test_head_out_sums_to_attn_out(tiny_model):
    for arch in ARCHS:
        m = tiny_model(arch)
        _, c = m.run_with_cache(PROMPTS[:2], ["head_out.1", "attn_out.1"])
        o = m.layer_module(1, "o")
        bias = o.bias if getattr(o, "bias", None) is not None else 0
        assert (c["head_out.1"].sum(2) + bias - c["attn_out.1"]).abs().max().item() < 1e-5, arch
