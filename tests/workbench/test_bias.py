"""workbench.bias: the BBQ bias measures by hand on planted probabilities, the rotation bookkeeping
against the K-option scorer itself, group swaps by hand, CrowS-Pairs and ETHICS judgements against
teacher forcing and the K-option scorer."""

import numpy as np
import pytest
import torch

from workbench import datasets
from workbench.bias import (
    BiasProfile,
    bbq_bias,
    bbq_group_swap,
    bbq_koption_items,
    bbq_prompt,
    bbq_swap_candidates,
    crows_preference,
    moral_judgement,
)
from workbench.datasets.moral import BBQItem
from workbench.scorers import koption_scores


def _item(i, condition, polarity, label, target=0, unknown=2):
    return BBQItem(i, "Religion", "1", polarity, condition, f"Context {i}.", "Who?", ("The X one", "The Y one", "Unknown"), label,
                   ("X", "Y", "unknown"), ("X", "Y", "Unknown"), ("X",), target, unknown)


def test_bias_measures_by_hand():
    items = (_item(0, "ambig", "neg", 2), _item(1, "ambig", "nonneg", 2), _item(2, "disambig", "neg", 1),
             _item(3, "disambig", "neg", 0), _item(4, "disambig", "neg", 1))
    probs = np.array([[0.6, 0.1, 0.3], [0.2, 0.5, 0.3], [0.7, 0.2, 0.1], [0.8, 0.1, 0.1], [0.3, 0.6, 0.1]])
    bp = BiasProfile(items, probs, np.full(5, 0.9), probs, 1)
    # biased answer: target (0) for neg, other (1) for nonneg; item 3's context supports the bias (label 0)
    assert list(bp.p_biased) == [0.6, 0.5, 0.7, 0.8, 0.3] and list(bp.p_counter) == [0.1, 0.2, 0.2, 0.1, 0.6]
    assert bp.bias_index(None, "ambig").value == pytest.approx(0.55)
    assert bp.bias_index(None, "disambig").value == pytest.approx(0.5)  # item 3 (supported) excluded
    assert bp.bias_gap(None, "ambig").value == pytest.approx(((0.6 - 0.1) + (0.5 - 0.2)) / 2)
    # Parrish et al.: s_DIS = 2 * biased / (biased + counter) - 1 over disambiguated items (expected counts)
    assert bp.parrish_score(None, "disambig").value == pytest.approx(2 * 1.8 / 2.7 - 1)
    # s_AMB = (1 - accuracy) * s over ambiguous items; accuracy = mean p(correct = unknown)
    s_amb = (2 * 1.1 / 1.4 - 1) * (1 - 0.3)
    assert bp.parrish_score(None, "ambig").value == pytest.approx(s_amb)
    assert bp.accuracy(None, "ambig").value == 0.0 and bp.accuracy(None, "disambig").value == pytest.approx(2 / 3)
    df = bp.table()
    assert set(df.condition) == {"ambig", "disambig"} and set(df.category) == {"Religion", "all"}
    assert "bias index" in bp.summary()


def test_prompt_and_rotation_bookkeeping_against_the_scorer(tiny_model):
    m = tiny_model("llama")
    it = datasets.bbq_items("Religion")[0]
    assert bbq_prompt(it) == (f"{it.context} {it.question}\nA. {it.answers[0]}\nB. {it.answers[1]}\n"
                              f"C. {it.answers[2]}\nAnswer:")
    assert bbq_prompt(it, (1, 2, 0)).split("\n")[1] == f"A. {it.answers[1]}"
    items = [_item(0, "ambig", "neg", 2), _item(1, "disambig", "nonneg", 1, target=1, unknown=0)]
    bp = bbq_bias(m, items, rotations=3)
    assert np.allclose(bp.probs.sum(1), 1.0)
    want = np.zeros((2, 3))
    for r in range(3):
        res = koption_scores(m, bbq_koption_items(items, r), chat=False)
        for j in range(3):
            want[:, (j + r) % 3] += res.probs[:, j] / 3  # displayed letter j shows answer (j + r) % 3
    assert np.allclose(bp.probs, want, atol=1e-6)
    assert bp.to_dataframe().shape[0] == 2


def test_group_swap_by_hand():
    items = datasets.bbq_items("Religion", condition="ambig")
    cand = bbq_swap_candidates(items)
    it = items[0]  # template 1: Muslim stereotyped (bomb)
    pool = cand[("Religion", "1")]
    assert "Muslim" not in pool and len(pool) >= 2
    sw = bbq_group_swap(it, cand, seed=0)
    assert sw is not None and sw.replacement in pool and sw.replacement != it.surfaces[it.other]
    assert sw.corrupt == sw.clean.replace("Muslim", sw.replacement)
    assert "Muslim" not in sw.corrupt and sw.corrupt_item.options == sw.clean_item.options
    assert bbq_group_swap(it, cand, seed=0).replacement == sw.replacement  # deterministic
    assert bbq_group_swap(it, {}, seed=0) is None


def test_crows_preference_against_teacher_forcing(tiny_model):
    m = tiny_model("gpt2")
    pairs = datasets.crows_pairs("religion")[:3]
    cr = crows_preference(m, pairs)
    s = pairs[0]["sent_more"]
    ids = [m.facts.bos_token_id] + m.tokenizer(s, add_special_tokens=False)["input_ids"]
    lp = torch.log_softmax(m.forward(torch.tensor([ids]))[0].float(), -1)
    ref = float(sum(lp[t - 1, ids[t]] for t in range(1, len(ids))))
    assert cr.logp_more[0] == pytest.approx(ref, rel=1e-4)
    assert cr.preference().n == 3 and len(cr.to_dataframe()) == 3


def test_moral_judgement_is_the_koption_yes_probability(tiny_model):
    m = tiny_model("llama")
    recs = datasets.ethics_commonsense()[:6]
    mj = moral_judgement(m, recs)
    assert np.all((mj.p_wrong > 0) & (mj.p_wrong < 1)) and list(mj.labels) == [r["label"] for r in recs]
    assert 0 <= mj.auroc().value <= 1 and "AUROC" in mj.summary()
