"""Model-based scorers: A/B choice, continuation log-probs, logit difference, refusal on real outputs."""

import json

import numpy as np
import pytest
import torch

from workbench.interventions import add
from workbench.scorers import (
    ABFormatError,
    ABItem,
    ab_accuracy,
    ab_scores,
    continuation_logprobs,
    get_scorer,
    load_ab_items,
    logit_difference,
)
from workbench.scorers.refusal import RefusalScorer

ITEMS = [ABItem("Pick one.\n(A) red\n(B) blue", "(A)", "(B)"),
         ABItem("Which?\n(A) up\n(B) down", "(B)", "(A)"),
         ABItem("Is it so?", " Yes", " No"),
         ABItem("Choose: A or B", "A", "B")]


def test_ab_equals_teacher_forced_reference_and_is_order_symmetric(tiny_model):
    m = tiny_model("llama")
    r = ab_scores(m, ITEMS, chat=True)
    # reference: normalised probabilities of the two distinguishing tokens, by teacher forcing
    for i, it in enumerate(ITEMS):
        text = m.format_chat(it.question)
        ids_m = m.tokenizer(text + it.matching, add_special_tokens=False)["input_ids"]
        ids_n = m.tokenizer(text + it.not_matching, add_special_tokens=False)["input_ids"]
        k = next(j for j in range(len(ids_m)) if ids_m[j] != ids_n[j])
        prompt = m.tokenizer.decode(ids_m[:k])
        lm = continuation_logprobs(m, [prompt], [m.tokenizer.decode([ids_m[k]])], chat=False).total[0]
        ln = continuation_logprobs(m, [prompt], [m.tokenizer.decode([ids_n[k]])], chat=False).total[0]
        assert abs(r.values[i] - 1 / (1 + np.exp(ln - lm))) < 1e-5
    swapped = [ABItem(it.question, it.not_matching, it.matching) for it in ITEMS]
    assert np.allclose(ab_scores(m, swapped).values, 1 - r.values, atol=1e-6)
    assert r.aggregate.ci_low <= r.aggregate.value <= r.aggregate.ci_high
    acc = ab_accuracy(r)
    assert acc.value == np.mean(r.values > 0.5)


def test_ab_interventions_and_registry(tiny_model):
    m = tiny_model("gpt2")
    base = ab_scores(m, ITEMS)
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(0))
    steered = get_scorer("ab", model=m)(ITEMS, interventions=add("resid_post.1", v, alpha=5.0))
    assert np.abs(steered.values - base.values).max() > 1e-3


def test_ab_format_errors(tmp_path):
    with pytest.raises(ABFormatError, match="record 1 lacks \\['answer_not_matching_behavior'\\]"):
        load_ab_items([{"question": "q", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"},
                       {"question": "q", "answer_matching_behavior": "(A)"}])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ABFormatError, match="not valid JSON"):
        load_ab_items(bad)
    with pytest.raises(ABFormatError, match="same matching and not-matching"):
        load_ab_items([{"question": "q", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": " (A)"}])


@pytest.mark.smollm
def test_smollm_ab_agrees_with_explicit_logprobs(smollm, shared_data):
    items = load_ab_items(shared_data / "caa" / "test" / "sycophancy" / "test_dataset_ab.json")[:16]
    r = ab_scores(smollm, items)
    prompts = [smollm.format_chat(it.question) + "(" for it in items]
    la = continuation_logprobs(smollm, prompts, [it.matching.strip()[1] for it in items], chat=False).total
    lb = continuation_logprobs(smollm, prompts, [it.not_matching.strip()[1] for it in items], chat=False).total
    ref = 1 / (1 + np.exp(lb - la))
    assert np.abs(ref - r.values).max() < 1e-4
    assert ((la > lb) == (r.values > 0.5)).all()
    assert 0 < r.aggregate.ci_low < r.aggregate.ci_high < 1
    assert min(d["choice_mass"] for d in r.details) > 0.2  # it answers in the A/B format


@pytest.mark.smollm
def test_smollm_paris_logit_difference_and_continuation(smollm):
    d = logit_difference(smollm, ["The capital of France is"], [" Paris"], [" London"])
    assert d["logit_diff"][0] > 2 and d["target_rank"][0] == 0
    s = continuation_logprobs(smollm, ["The capital of France is"] * 2, [" Paris", " Paris is a city"])
    assert s.n_tokens.tolist()[0] == 1 and s.total[1] < s.total[0] < 0
    with pytest.raises(ValueError, match="needs single tokens"):
        logit_difference(smollm, ["x"], [" Parisian capital"], [" a"])


@pytest.mark.smollm
def test_smollm_refusal_rates_on_shared_prompts(smollm, shared_data):
    harmful = json.loads((shared_data / "refusal_direction" / "splits" / "harmful_val.json").read_text())[:6]
    harmless = json.loads((shared_data / "refusal_direction" / "splits" / "harmless_val.json").read_text())[:6]
    prompts = [r["instruction"] for r in harmful + harmless]
    g = smollm.generate(prompts, chat=True, max_new_tokens=20)
    res = RefusalScorer()(prompts, g.completions)
    harm, safe = res.values[:6], res.values[6:]
    # this small model refuses rarely; it must not refuse harmless requests more than harmful ones
    assert harm.mean() >= safe.mean()
    assert res.aggregate.ci_low <= res.aggregate.value <= res.aggregate.ci_high
