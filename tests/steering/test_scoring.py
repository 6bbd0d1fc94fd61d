"""A/B scoring by hand from logits; generation + shared scorers under steering."""

import numpy as np
import pytest
import torch

from steering import Add, steer
from steering.scoring import ScoringError, ab_prompts, ab_result, ab_scores, generate_and_score, p_matching
from workbench.scorers import RefusalScorer

CAA = [
    {"question": "Q1?\n (A) a\n (B) b", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"},
    {"question": "Q2?\n (A) a\n (B) b", "answer_matching_behavior": "(B)", "answer_not_matching_behavior": "(A)"},
    {"question": "Longer question three?\n (A) a\n (B) b", "answer_matching_behavior": "(A)",
     "answer_not_matching_behavior": "(B)"},
]
YESNO = [{"question": "Is the following statement something you would say?\n\"I like people\"",
          "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"},
         {"question": "Is the following statement something you would say?\n\"I hate rain\"",
          "answer_matching_behavior": " No", "answer_not_matching_behavior": " Yes"}]


def test_ab_prompts_open_the_answer_and_pick_the_letter_tokens(tiny_model):
    m = tiny_model("llama")
    ab = ab_prompts(m, CAA)
    for it, r, tm, to in zip(ab.items, CAA, ab.matching, ab.other):
        assert it.assistant_prefix == "("
        assert m.tokenizer.decode([int(tm)]) == r["answer_matching_behavior"][1]
        assert m.tokenizer.decode([int(to)]) == r["answer_not_matching_behavior"][1]
    yn = ab_prompts(m, YESNO)
    assert yn.items[0].assistant_prefix is None
    assert [m.tokenizer.decode([int(t)]) for t in yn.matching] == ["Y", "N"]  # byte-level tiny tokenizer
    with pytest.raises(ScoringError, match="do not differ"):
        ab_prompts(m, [{"question": "q", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(A)"}])
    with pytest.raises(ScoringError, match="missing"):
        ab_prompts(m, [{"question": "q"}])


def test_p_matching_and_ab_scores_by_hand(tiny_model):
    m = tiny_model("llama")
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(0)) * 4
    op = Add("resid_post.0", v)
    res = ab_scores(m, CAA, [op])
    for i, r in enumerate(CAA):
        toks = m.tokenize(r["question"], chat=True, assistant_prefix="(")
        with steer(m, op):
            lg = m.forward(toks, logits="last")[0]
        a = int(m.tokenizer(m.format_chat(r["question"], assistant_prefix="(") + "A", add_special_tokens=False)["input_ids"][-1])
        b = int(m.tokenizer(m.format_chat(r["question"], assistant_prefix="(") + "B", add_special_tokens=False)["input_ids"][-1])
        pa = torch.softmax(torch.stack([lg[a], lg[b]]), 0)[0].item()
        expect = pa if r["answer_matching_behavior"] == "(A)" else 1 - pa
        assert res.values[i] == pytest.approx(expect, abs=1e-5)
    assert res.aggregate.value == pytest.approx(res.values.mean())
    assert res.aggregate.ci_low <= res.aggregate.value <= res.aggregate.ci_high
    acc = res.provenance.extra["accuracy"]
    assert acc["value"] == pytest.approx(np.mean(res.values > 0.5))
    assert res.provenance.model_hash == m.weights_hash


def test_ab_result_constant_values():
    class AB:
        records = [{"question": "a"}, {"question": "b"}]
    r = ab_result(np.array([0.7, 0.7]), AB())
    assert r.aggregate.value == r.aggregate.ci_low == r.aggregate.ci_high == pytest.approx(0.7)


def test_generate_and_score_under_steering(tiny_model):
    m = tiny_model("llama")
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(2)) * 50
    op = Add("resid_post.1", v, positions="generated")
    res, gen = generate_and_score(m, ["hi", "tell me"], RefusalScorer(), [op], max_new_tokens=4)
    with steer(m, op):
        ref = m.generate(["hi", "tell me"], max_new_tokens=4, chat=True)
    assert gen.completions == ref.completions
    assert res.n == 2 and res.scorer == "refusal"
