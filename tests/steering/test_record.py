"""record_activations against single unpadded runs and hand-computed reductions."""

import pytest
import torch

from steering.record import RecordError, format_items, normalize_items, record_activations

PROMPTS = ["hello there", "a", "the quick brown fox jumps"]


def _alone(m, text_ids, layer, kind="resid_post"):
    toks = m.tokenize(torch.tensor([text_ids]))
    _, c = m.run_with_cache(toks, [f"{kind}.{layer}"], device="cpu")
    return c[f"{kind}.{layer}"][0]  # [t, d]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_last_mean_index_and_lists_equal_unpadded_runs(tiny_model, arch):
    m = tiny_model(arch)
    items = normalize_items(PROMPTS)
    _, ids, _ = format_items(m, items, chat=True)
    for positions in ["last", "mean", 0, -2, [-1, 0]]:
        got = record_activations(m, PROMPTS, [0, 1], positions=positions, batch_size=2)
        for L in (0, 1):
            for i, x in enumerate(ids):
                a = _alone(m, x, L)
                if positions == "last":
                    ref = a[-1]
                elif positions == "mean":
                    ref = a.mean(0)
                elif isinstance(positions, list):
                    ref = torch.stack([a[p] for p in positions])
                else:
                    ref = a[positions]
                assert torch.allclose(got[L][i], ref, atol=1e-5), (positions, L, i)


def test_response_mean_covers_exactly_the_response_tokens(tiny_model):
    m = tiny_model("llama")
    items = [{"prompt": "hi", "response": "abc de"}, {"prompt": "how are you", "system": "be brief", "response": "x"}]
    got = record_activations(m, items, [1], positions="response")
    for i, it in enumerate(items):
        prefix = m.format_chat(it["prompt"], system=it.get("system"))
        full_ids = m.tokenizer(prefix + it["response"], add_special_tokens=False)["input_ids"]
        pre_ids = m.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        assert full_ids[:len(pre_ids)] == pre_ids
        k = len(full_ids) - len(pre_ids)
        a = _alone(m, full_ids, 1)
        assert torch.allclose(got[1][i], a[-k:].mean(0), atol=1e-5)


def test_per_item_system_and_prefix_match_the_models_chat_template(tiny_model):
    m = tiny_model("llama")
    items = [{"prompt": "q1", "system": "sys A", "assistant_prefix": "(A"}, {"prompt": "q2", "system": "sys B"}]
    got = record_activations(m, items, [0])
    for i, it in enumerate(items):
        toks = m.tokenize(it["prompt"], chat=True, system=it["system"], assistant_prefix=it.get("assistant_prefix"))
        _, c = m.run_with_cache(toks, ["resid_post.0"], positions="last", device="cpu")
        assert torch.allclose(got[0][i], c["resid_post.0"][0], atol=1e-5)


def test_errors(tiny_model):
    m = tiny_model("llama")
    with pytest.raises(RecordError, match="needs a 'response' for every item; missing at \\[0\\]"):
        record_activations(m, ["x"], [0], positions="response")
    with pytest.raises(RecordError, match="a dict item needs 'prompt'"):
        record_activations(m, [{"text": "x"}], [0])
    with pytest.raises(RecordError, match="unknown positions 'middle'"):
        record_activations(m, ["x"], [0], positions="middle")
    with pytest.raises(RecordError, match="system / assistant_prefix need chat=True"):
        record_activations(m, [{"prompt": "x", "system": "s"}], [0], chat=False)
