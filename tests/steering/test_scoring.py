"""A/B scoring: the fast path's contexts and p(matching) equal the shared scorer; generation + shared
scorers under steering."""

import numpy as np
import pytest
import torch

from steering import Add, steer
from steering.fastpath import ResidualReplay
from steering.scoring import ScoringError, ab_prompts, generate_and_score, p_matching, steered_ab_scores
from workbench.scorers import RefusalScorer
from workbench.scorers.ab import ab_scores as shared_ab_scores

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


@pytest.mark.parametrize("records", [CAA, YESNO], ids=["caa", "yes_no"])
def test_fast_path_equals_the_shared_ab_scorer(tiny_model, records):
    m = tiny_model("llama")
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(0)) * 4
    op = Add("resid_post.0", v)
    ab = ab_prompts(m, records)
    for i, r in enumerate(records):
        text = m.format_chat(r["question"])
        for toks, key in ((ab.matching, "answer_matching_behavior"), (ab.other, "answer_not_matching_behavior")):
            seq = m.tokenizer.decode(ab.contexts[i] + [int(toks[i])])
            assert seq.startswith(text) and (text + r[key].strip()).startswith(seq)
    shared = shared_ab_scores(m, records, interventions=op.interventions(m), strip_answers=True)
    ours = steered_ab_scores(m, records, [op])
    assert np.allclose(ours.values, shared.values) and ours.scorer == "ab"
    rp = ResidualReplay(m, ab.contexts, "resid_post.0", positions="all", batch_size=2)
    assert np.allclose(p_matching(rp.last_logits(v), ab), shared.values, atol=1e-5)
    base = shared_ab_scores(m, records, strip_answers=True)
    assert np.allclose(p_matching(rp.last_logits(), ab), base.values, atol=1e-5)
    assert not np.allclose(base.values, shared.values, atol=1e-3)


def test_caa_contexts_end_with_the_open_parenthesis(smollm):
    ab = ab_prompts(smollm, CAA)
    assert smollm.tokenizer.decode(ab.contexts[0][-4:]) == "assistant\n("
    assert [smollm.tokenizer.decode([int(t)]) for t in ab.matching] == ["A", "B", "A"]
    yn = ab_prompts(smollm, YESNO)
    assert [smollm.tokenizer.decode([int(t)]) for t in yn.matching] == ["Yes", "No"]
    # CAA steers the tokens after the instruction: <|im_end|> \n <|im_start|> ass istant \n (
    assert ab.after_instruction(smollm) == list(range(-7, 0)) and yn.after_instruction(smollm) == list(range(-6, 0))
    assert smollm.tokenizer.decode(ab.contexts[0][-7:]) == "<|im_end|>\n<|im_start|>assistant\n("
    with pytest.raises(ScoringError, match="missing"):
        ab_prompts(smollm, [{"question": "q"}])


def test_generate_and_score_under_steering(tiny_model):
    m = tiny_model("llama")
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(2)) * 50
    op = Add("resid_post.1", v, positions="generated")
    res, gen = generate_and_score(m, ["hi", "tell me"], RefusalScorer(), [op], max_new_tokens=4)
    with steer(m, op):
        ref = m.generate(["hi", "tell me"], max_new_tokens=4, chat=True)
    assert gen.completions == ref.completions
    assert res.n == 2 and res.scorer == "refusal"


def test_logit_trait_judge_by_hand_and_through_the_trait_scorer(tiny_model):
    from steering.scoring import LOGIT_JUDGE_TEMPLATE, logit_trait_judge
    from workbench.scorers import TraitScorer

    m = tiny_model("llama")
    j = logit_trait_judge(m, "calm", "relaxed")
    prompts, outs = ["q1", "q2"], ["a calm reply", "AAAA!!"]
    got = j(prompts, outs)
    y, n = (m.tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in ("Yes", "No"))
    for p, o, g in zip(prompts, outs, got):
        lg = m.forward(m.tokenize(LOGIT_JUDGE_TEMPLATE.format(prompt=p, output=o, trait="calm", description="relaxed"),
                                  chat=True), logits="last")[0]
        assert g == pytest.approx(100 * torch.sigmoid(lg[y] - lg[n]).item(), abs=1e-4)
    res = TraitScorer(j, trait="calm")(prompts, outs)
    assert np.allclose(res.values, got) and res.n_unscored == 0
