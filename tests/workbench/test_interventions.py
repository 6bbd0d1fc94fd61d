"""Each intervention op against a hand-written PyTorch hook on the plain HF model."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.interventions import (
    InterventionError,
    add,
    custom,
    mean_ablate,
    project_out,
    replace,
    scale,
    zero_ablate,
)

PROMPTS = ["hello there world", "abc"]


@pytest.fixture(scope="module")
def llama(tiny_model):
    return tiny_model("llama", "tl"), tiny_model("llama", "nnsight")


@pytest.fixture(scope="module")
def hf(llama):
    return AutoModelForCausalLM.from_pretrained(llama[0].source, attn_implementation="eager").eval().to(llama[0].device)


def _hf_logits(hf, toks, layer_hook=None, o_pre=None, layer=1):
    hs = []
    if layer_hook is not None:
        hs.append(hf.model.layers[layer].register_forward_hook(lambda m, a, o: layer_hook(o)))
    if o_pre is not None:
        hs.append(hf.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(lambda m, a: (o_pre(a[0]),)))
    try:
        with torch.no_grad():
            return hf(toks.input_ids, attention_mask=toks.attention_mask, position_ids=toks.position_ids).logits
    finally:
        for h in hs:
            h.remove()


def test_add_scale_project_match_hand_hooks(llama, hf):
    tl, nn = llama
    toks = tl.tokenize(PROMPTS)
    v = torch.randn(tl.facts.d_model, generator=torch.Generator().manual_seed(1))
    last = toks.last_index
    rows = torch.arange(len(toks), device=last.device)

    def add_last(o):
        o = o.clone()
        o[rows, last] += 2.5 * v.to(o.device)
        return o
    ref = _hf_logits(hf, toks, layer_hook=add_last, layer=0)
    for m in (tl, nn):
        got = m.forward(toks, interventions=add("resid_post.0", v, alpha=2.5, positions="last"))
        # real tokens only: logits at left-padding positions are arbitrary (SDPA and eager differ there)
        assert (got - ref)[toks.attention_mask.bool()].abs().max() < 1e-5

    ref = _hf_logits(hf, toks, layer_hook=lambda o: o * 0.3, layer=0)
    for m in (tl, nn):
        assert (m.forward(toks, interventions=scale("resid_post.0", 0.3)) - ref)[toks.attention_mask.bool()].abs().max() < 1e-5

    r = v / v.norm()
    rd = r.to(tl.device)
    ref = _hf_logits(hf, toks, layer_hook=lambda o: o - (o @ rd)[..., None] * rd, layer=0)
    for m in (tl, nn):
        got = m.forward(toks, interventions=project_out("resid_post.0", v))
        assert (got - ref)[toks.attention_mask.bool()].abs().max() < 1e-5
        _, c = m.run_with_cache(toks, ["resid_post.0"], interventions=project_out("resid_post.0", v))
        # the cache records the value after the intervention (padding is never intervened on)
        assert (c["resid_post.0"] @ rd)[toks.attention_mask.bool()].abs().max() < 1e-5


def test_head_ablations_match_o_proj_hook(llama, hf):
    tl, nn = llama
    toks = tl.tokenize(PROMPTS)
    d = tl.facts.d_head

    def zero_head2(x):
        x = x.clone()
        x[..., 2 * d:3 * d] = 0
        return x
    ref = _hf_logits(hf, toks, o_pre=zero_head2, layer=1)
    for m in (tl, nn):
        for iv in (zero_ablate("z.1", heads=[2]), zero_ablate("z.1.h2"), scale("head_out.1", 0.0, heads=2),
                   zero_ablate("head_out.1", heads=[2])):
            got = m.forward(toks, interventions=iv)
            assert (got - ref)[toks.attention_mask.bool()].abs().max() < 1e-5, (m.backend_name, iv.site, iv.op)
    mean = torch.randn(d)

    def mean_head2(x):
        x = x.clone()
        x[..., 2 * d:3 * d] = mean.to(x.device)
        return x
    ref = _hf_logits(hf, toks, o_pre=mean_head2, layer=1)
    for m in (tl, nn):
        got = m.forward(toks, interventions=mean_ablate("z.1", mean, heads=[2]))
        assert (got - ref)[toks.attention_mask.bool()].abs().max() < 1e-5


def test_replace_full_activation_is_patching(llama):
    tl, _ = llama
    clean, corrupt = "hello there world", "hellx there world"
    _, cc = tl.run_with_cache(clean, ["resid_pre.0", "resid_post.1"])
    clean_logits = tl.forward(clean)
    # patching every position at the first layer's input restores the clean run exactly
    got = tl.forward(corrupt, interventions=replace("resid_pre.0", cc["resid_pre.0"]))
    assert (got - clean_logits).abs().max() < 1e-5
    # patching one position only changes positions at and after it
    base = tl.forward(corrupt)
    got = tl.forward(corrupt, interventions=replace("resid_post.1", cc["resid_post.1"], positions=[7]))
    assert (got[:, :7] - base[:, :7]).abs().max() == 0 and (got[:, 7] - base[:, 7]).abs().max() > 0
    with pytest.raises(InterventionError, match="same batch size and number of tokens"):
        tl.forward("hello", interventions=replace("resid_pre.0", cc["resid_pre.0"]))


def test_custom_and_hooks_context(llama):
    tl, nn = llama
    base = tl.forward(PROMPTS)
    real = tl.tokenize(PROMPTS).attention_mask.bool()  # logits at padding positions are each kernel's own
    iv = custom("mlp_out.0", lambda x, mask: x * 0)
    for m in (tl, nn):
        with m.hooks([iv]):
            inside = m.forward(PROMPTS)
        assert (inside - base).abs().max() > 0
        assert torch.equal(m.forward(PROMPTS), m.forward(PROMPTS))  # removed on exit
        assert (m.forward(PROMPTS) - base)[real].abs().max() < 1e-5  # 1.2e-6 on an H100 (kernel choice)


def test_clear_errors(llama, smollm):
    tl, nn = llama
    with pytest.raises(InterventionError, match=r"wrong vector width for resid_post.0: got 576 .* width 64"):
        tl.forward("hi", interventions=add("resid_post.0", torch.zeros(576)))
    with pytest.raises(InterventionError, match="out of range"):
        tl.forward("hi", interventions=zero_ablate("z.0", heads=[9]))
    with pytest.raises(InterventionError, match="need backend='tl'"):
        nn.forward("hi", interventions=zero_ablate("pattern.0"))
    with pytest.raises(InterventionError, match="576"):
        with smollm.hooks([add("resid_post.3", torch.zeros(64))]):
            pass


def test_pattern_intervention_tl(llama):
    tl, _ = llama
    base = tl.forward(PROMPTS)
    assert (tl.forward(PROMPTS, interventions=scale("pattern.1", 0.0, heads=[0])) - base).abs().max() > 0
