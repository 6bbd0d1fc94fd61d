"""Sampling in ``HookedModel.generate``: one generator per row, so samples do not depend on the batch.

The rule (``workbench.models.hooked.row_seed``): row seed = first 8 bytes of
sha256("{seed}|{prompt token ids}|{sample id}"), sample id = index of the prompt among identical prompts
in the call (or ``sample_ids``). Checked here: the same prompt gives the same tokens alone, inside a
batch of 5 and with batch_size 1 and 3; the first sampled token equals a draw made by hand from the
softmax with that seed; duplicates are distinct samples equal to explicit sample ids; the sampled
frequencies match the model's probabilities (chi-square); both backends draw the same tokens.
"""

import numpy as np
import pytest
import torch

from workbench.models.hooked import row_seed

PROMPTS = ["hello there", "a much longer prompt than that one is", "x", "the cat sat on the", "one two three four five"]
KW = dict(max_new_tokens=6, do_sample=True, temperature=1.0, seed=11, stop_at_eos=False)


def test_samples_do_not_depend_on_batch_composition_or_size(tiny_model):
    m = tiny_model("llama")
    target = PROMPTS[1]
    alone = m.generate(target, **KW).completion_ids[0]
    in_five = m.generate(PROMPTS, **KW).completion_ids
    assert in_five[1] == alone
    for bs in (1, 3):
        assert m.generate(PROMPTS, batch_size=bs, **KW).completion_ids == in_five
    reordered = m.generate(PROMPTS[::-1], **KW).completion_ids[::-1]
    assert reordered == in_five
    # a different seed gives different samples (6 tokens from a random model: a collision is ~impossible)
    assert m.generate(target, **{**KW, "seed": 12}).completion_ids[0] != alone


def test_duplicates_are_distinct_samples_equal_to_explicit_sample_ids(tiny_model):
    m = tiny_model("llama")
    g = m.generate([PROMPTS[0]] * 3 + [PROMPTS[3]], **KW)
    assert len({tuple(x) for x in g.completion_ids[:3]}) == 3
    for j in range(3):
        assert m.generate(PROMPTS[0], sample_ids=[j], **KW).completion_ids[0] == g.completion_ids[j]
    assert g.completion_ids[3] == m.generate(PROMPTS[3], **KW).completion_ids[0]
    assert g.settings["sample_ids"] == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="one per prompt"):
        m.generate(PROMPTS[:2], sample_ids=[0], **KW)


def test_first_token_is_a_draw_from_the_documented_row_generator(tiny_model):
    m = tiny_model("llama")
    p = PROMPTS[3]
    ids = m.tokenize(p).real_tokens(0)
    logits = m.forward(p, logits="last")[0].float().cpu()
    probs = torch.softmax(logits / 0.7, -1)
    for j in range(4):
        gen = torch.Generator().manual_seed(row_seed(11, ids, j))
        want = int(torch.multinomial(probs, 1, generator=gen))
        got = m.generate(p, sample_ids=[j], **{**KW, "temperature": 0.7, "max_new_tokens": 1}).completion_ids[0]
        assert got == [want]


def test_sampled_frequencies_match_the_model_probabilities(tiny_model):
    """2000 first tokens (top_k=3) against the renormalised top-3 probabilities: chi-square, 2 df."""
    m = tiny_model("neox")
    p, n = PROMPTS[0], 2000
    logits = m.forward(p, logits="last")[0].float().cpu()
    top = torch.topk(logits, 3)
    expected = torch.softmax(top.values, -1).numpy() * n
    g = m.generate([p] * n, max_new_tokens=1, do_sample=True, top_k=3, seed=3, stop_at_eos=False, batch_size=500)
    first = np.array([c[0] for c in g.completion_ids])
    observed = np.array([(first == int(t)).sum() for t in top.indices])
    assert observed.sum() == n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 13.8  # chi-square 2 df, p = 0.001


def test_backends_draw_the_same_samples(tiny_model):
    tl, nn = tiny_model("llama", "tl"), tiny_model("llama", "nnsight")
    assert tl.generate(PROMPTS, **KW).completion_ids == nn.generate(PROMPTS, **KW).completion_ids
