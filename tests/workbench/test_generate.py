"""Generation: KV-cached loop equals HF generate and an uncached reference loop; position policies."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.interventions import add
from workbench.models import PaddingError

PROMPTS = ["hello there", "a much longer prompt than that"]


def _reference(model, prompt, n, iv_factory=None):
    """Greedy decoding with no KV cache: a full forward per step, intervention mask built by hand."""
    toks = model.tokenize(prompt)
    ids = toks.input_ids[0].tolist()
    T0 = len(ids)
    out = []
    for _ in range(n):
        t = torch.tensor([ids], device=model.device)
        ivs = iv_factory(T0, len(ids)) if iv_factory else None
        logits = model.forward(t, interventions=ivs)
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        ids.append(nxt)
    return out


@pytest.mark.drift
@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
def test_greedy_equals_hf_generate_and_backends_agree(tiny_model, arch):
    """Cached generate == the uncached greedy loop == transformers' own greedy generate, on both backends
    (transformers 5.25 left the TL backend's KV cache empty: llama and gpt2 then emitted other tokens)."""
    tl, nn = tiny_model(arch, "tl"), tiny_model(arch, "nnsight")
    hf = AutoModelForCausalLM.from_pretrained(tl.source, attn_implementation="eager").eval()
    g_tl = tl.generate(PROMPTS, max_new_tokens=6, stop_at_eos=False)
    g_nn = nn.generate(PROMPTS, max_new_tokens=6, stop_at_eos=False)
    assert g_tl.completion_ids == g_nn.completion_ids
    for i, p in enumerate(PROMPTS):
        ids = tl.tokenize(p).input_ids
        ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
        assert g_tl.completion_ids[i] == ref[0, ids.shape[1]:].tolist()
        for m in (tl, nn):
            assert _reference(m, p, 6) == g_tl.completion_ids[i]


@pytest.mark.drift
@pytest.mark.smollm
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_real_model_cached_generation_equals_uncached_and_transformers(request, backend):
    """The same on the default real model, whose logits are far from flat: a broken cache shows at once
    (5.25's TL backend gave ' Paris-------' where the uncached loop gives ' Paris.')."""
    m = request.getfixturevalue("smollm" if backend == "tl" else "smollm_nn")
    prompt = "The capital of France is"
    g = m.generate(prompt, max_new_tokens=8, stop_at_eos=False)
    assert g.completion_ids[0] == _reference(m, prompt, 8)
    hf = AutoModelForCausalLM.from_pretrained(m.source, attn_implementation="eager").eval()
    ids = m.tokenize(prompt).input_ids.cpu()
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                      eos_token_id=None, pad_token_id=0)
    assert g.completion_ids[0] == ref[0, ids.shape[1]:].tolist()
    assert g.completions[0].startswith(" Paris")


def test_position_policies_against_uncached_reference(tiny_model):
    m = tiny_model("llama")
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(3))
    n = 5

    def mask_iv(positions):
        return lambda T0, T: [add("resid_post.0", v, alpha=4.0, positions=positions(T0, T))]
    cases = {
        # "generated": the last prompt position and every generated position fed back
        "generated": lambda T0, T: list(range(T0 - 1, T)),
        "prompt": lambda T0, T: list(range(T0)),
        "all": lambda T0, T: list(range(T)),
        "last": lambda T0, T: [T0 - 1],  # an index spec applies to prompt positions only
    }
    base = m.generate(PROMPTS[0], max_new_tokens=n, stop_at_eos=False).completion_ids[0]
    results = {}
    for policy, positions in cases.items():
        got = m.generate(PROMPTS[0], max_new_tokens=n, stop_at_eos=False,
                         interventions=add("resid_post.0", v, alpha=4.0, positions=policy)).completion_ids[0]
        assert got == _reference(m, PROMPTS[0], n, mask_iv(positions)), policy
        results[policy] = got
    # the first generated token is affected by "generated" (it is predicted from the last prompt position)
    assert results["generated"][0] != base[0]
    assert results["generated"][0] == results["last"][0]


def test_batched_left_padded_generation_equals_single(tiny_model, smollm):
    m = tiny_model("neox")
    both = m.generate(PROMPTS, max_new_tokens=5, stop_at_eos=False)
    for i, p in enumerate(PROMPTS):
        assert m.generate(p, max_new_tokens=5, stop_at_eos=False).completion_ids[0] == both.completion_ids[i]
    g = smollm.generate(["The capital of France is", "Hi"], max_new_tokens=4)
    assert g.completions[0].startswith(" Paris")


def test_sampling_is_seeded(tiny_model):
    m = tiny_model("gpt2")
    a = m.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=1.0, top_k=50, seed=7, stop_at_eos=False)
    b = m.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=1.0, top_k=50, seed=7, stop_at_eos=False)
    c = m.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=1.0, top_k=50, seed=8, stop_at_eos=False)
    assert a.completion_ids == b.completion_ids and a.completion_ids != c.completion_ids
    df = a.to_dataframe()
    assert list(df.columns) == ["prompt", "prompt_text", "completion", "n_tokens", "finish_reason"]


def test_eos_stops_and_is_not_returned(smollm):
    g = smollm.generate("What is 2+2? Answer with one number.", chat=True, max_new_tokens=40)
    eos = smollm.facts.eos_token_id
    assert g.finish_reasons[0] == "eos" and eos not in g.completion_ids[0]
    assert "4" in g.completions[0]


def test_right_padded_tokens_rejected(tiny_model):
    m = tiny_model("llama")
    with pytest.raises(PaddingError, match="left-padded"):
        m.generate(m.tokenize(PROMPTS, padding_side="right"), max_new_tokens=2)
    left = m.generate(m.tokenize(PROMPTS), max_new_tokens=3, stop_at_eos=False)
    assert left.completion_ids == m.generate(PROMPTS, max_new_tokens=3, stop_at_eos=False).completion_ids
