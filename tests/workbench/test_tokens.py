import pytest
import torch

from workbench.models import ContextLengthError, PositionError, Tokens, resolve_positions


def test_left_padding_and_position_ids(tiny_model):
    m = tiny_model("llama")
    t = m.tokenize(["abcd", "ab"])
    assert t.padding_side == "left"
    assert t.attention_mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert t.position_ids.tolist() == [[0, 1, 2, 3], [0, 0, 0, 1]]
    assert t.last_index.tolist() == [3, 3] and t.starts.tolist() == [0, 2]
    r = m.tokenize(["abcd", "ab"], padding_side="right")
    assert r.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert r.last_index.tolist() == [3, 1]


def test_left_padded_row_equals_the_prompt_alone(tiny_model):
    for arch in ["llama", "gpt2", "neox"]:
        m = tiny_model(arch)
        both = m.forward(["a longer prompt", "short"], logits="last")
        alone = m.forward("short", logits="last")
        right = m.forward(["a longer prompt", "short"], logits="last", padding_side="right")
        assert (both[1] - alone[0]).abs().max() < 1e-4, arch
        assert (right - both).abs().max() < 1e-4, arch


def test_positions_relative_to_real_tokens(tiny_model):
    m = tiny_model("llama")
    t = m.tokenize(["abcd", "ab"])
    assert resolve_positions("last", t).tolist() == [[0, 0, 0, 1], [0, 0, 0, 1]]
    assert resolve_positions(0, t).tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
    assert resolve_positions(-2, t).tolist() == [[0, 0, 1, 0], [0, 0, 1, 0]]
    assert resolve_positions(slice(1, None), t).tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert resolve_positions("all", t).tolist() == t.attention_mask.bool().tolist()
    with pytest.raises(PositionError, match="out of range for prompt 1, which has 2 tokens"):
        resolve_positions(3, t)
    with pytest.raises(PositionError, match="is a policy for interventions"):
        resolve_positions("generated", t)


def test_bos_policy_and_chat_template(tiny_model, smollm):
    m = tiny_model("gpt2")
    assert m.prepend_bos is False  # follows the tokenizer, which adds no BOS
    with_bos = m.tokenize("hi", prepend_bos=True).real_tokens(0)
    assert with_bos[0] == m.facts.bos_token_id and with_bos[1:] == m.tokenize("hi").real_tokens(0)
    text = m.format_chat("hi", system="be brief")
    assert text == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    t = m.tokenize("hi", chat=True, assistant_prefix="(")
    assert t.texts[0].endswith("assistant\n(")
    # SmolLM2: the chat template writes its own special tokens, no extra BOS
    s = smollm.tokenize("What is 2+2?", chat=True)
    ids = s.real_tokens(0)
    assert ids[0] == smollm.tokenizer.convert_tokens_to_ids("<|im_start|>") and ids.count(ids[0]) == 3
    assert smollm.tokenize("The capital").real_tokens(0) == smollm.tokenizer("The capital")["input_ids"]


def test_errors(tiny_model):
    m = tiny_model("llama")
    with pytest.raises(ContextLengthError, match="prompt 1 has 300 tokens, more than .* context of 256"):
        m.tokenize(["ok", "x" * 300])
    with pytest.raises(ValueError, match="need chat=True"):
        m.tokenize([[{"role": "user", "content": "hi"}]])
    with pytest.raises(ValueError, match="not left-padded"):
        Tokens(torch.tensor([[1, 2, 3]]), torch.tensor([[1, 0, 1]]))
    with pytest.raises(ValueError, match="only apply with chat=True"):
        m.tokenize("hi", system="x")


def test_ids_past_a_learned_position_table_are_a_clear_error():
    """Ids built outside tokenize (a scorer appending answers, Tokens made elsewhere) longer than GPT-2's learned
    position table: a ContextLengthError naming the context, not an embedding IndexError."""
    from workbench.models import ContextLengthError, load

    m = load("tiny-gpt2")
    n = m.facts.n_ctx
    with pytest.raises(ContextLengthError, match=f"context of {n}"):
        m.forward(m._pad([[1] * (n + 1), [2, 3]], "left", [None, None], {}), logits="last")
    from workbench.models.tokens import Tokens

    ids = torch.ones(1, n + 1, dtype=torch.long)
    with pytest.raises(ContextLengthError, match="position table"):
        m.forward(Tokens(ids, torch.ones_like(ids), "right"), logits="last")
    assert m.forward(m._pad([[1] * n], "left", [None], {}), logits="last").shape[0] == 1
