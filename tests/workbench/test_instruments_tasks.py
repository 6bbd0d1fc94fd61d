"""The Personality Illusion's behavioural tasks: planted-logit models with known answers, hand-computed metrics."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.instruments.tasks import (
    CalibrationResult,
    IATSet,
    calibration_task,
    iat_task,
    load_calibration_questions,
    load_dilemmas,
    load_iat_sets,
    sycophancy_task,
)


class _Planted:
    """A tiny model's tokenizer and template with next-token logits planted by ``rule(text) -> [(string, boost)]``
    (the first token of each string gets the boost), plus small per-prompt noise."""

    def __init__(self, base, rule):
        import dataclasses

        self._base, self.rule = base, rule
        self.facts = dataclasses.replace(base.facts, n_ctx=4096)  # planted logits: any prompt length

    def __getattr__(self, name):
        return getattr(self._base, name)

    def forward(self, toks, interventions=None, logits="last"):
        tok = self._base.tokenizer
        out = torch.zeros(toks.input_ids.shape[0], self._base.facts.d_vocab)
        for r in range(out.shape[0]):
            ids = toks.input_ids[r][toks.attention_mask[r].bool()].tolist()
            g = torch.Generator().manual_seed(sum(ids) % 100003)
            out[r] = 0.1 * torch.randn(out.shape[1], generator=g)
            for s, boost in self.rule(tok.decode(ids)):
                out[r, tok(s, add_special_tokens=False)["input_ids"][0]] += boost
        return out


def test_loaders():
    assert len(load_dilemmas()) == 52 and len(load_dilemmas(5, seed=1)) == 5
    assert len(load_iat_sets()) == 21
    qs = load_calibration_questions()
    assert len(qs) == 75 and sum(not q["answerable"] for q in qs) == 25
    sub = load_calibration_questions(10, seed=0)
    assert len(sub) == 10 and {q["bin"] for q in sub} == {1, 2, 3, 4, 5}


def test_sycophancy_flags_a_model_that_follows_the_user_and_not_one_that_ignores_it(tiny_model):
    base = tiny_model("llama")
    ds = load_dilemmas(6, seed=0)

    def follower(text):  # says No alone; says whatever the user says when the user speaks
        m = re.search(r"I would say (yes|no)", text)
        return [("Yes", 3.0)] if m and m.group(1) == "yes" else [("No", 3.0)]

    r = sycophancy_task(_Planted(base, follower), ds)
    assert r.user_says_yes.all() and r.flipped.all() and r.rate().value == 1.0
    assert r.mean_shift().value > 0.8 and r.p_yes().value < 0.1
    stubborn = sycophancy_task(_Planted(base, lambda t: [("No", 3.0)]), ds)
    assert not stubborn.flipped.any() and abs(stubborn.mean_shift().value) < 0.05
    assert stubborn.rate().ci_high < 0.5 and "rate 0.00" in stubborn.summary()
    df = r.to_dataframe()
    assert len(df) == 6 and set(df["user_says"]) == {"yes"}


def test_iat_recovers_a_planted_association_and_cancels_position_bias(tiny_model):
    base = tiny_model("llama")
    sets = [IATSet("s1", "c", ("Alpha",), ("Beta",), ("good", "nice", "fine"), ("bad", "vile", "poor")),
            IATSet("s2", "c", ("Gamma",), ("Delta",), ("sun", "day"), ("moon", "night"))]
    good = {"good", "nice", "fine", "sun", "day"}

    def associator(text):
        w = re.search(r'the word "(\w+)"', text).group(1)
        first, second = re.search(r": (\w+) or (\w+)\?", text).groups()
        a_label = first if first in ("Alpha", "Gamma") else second
        b_label = second if a_label == first else first
        return [(a_label if w in good else b_label, 2.0)]

    r = iat_task(_Planted(base, associator), sets)
    ps = r.per_set()
    assert (ps["D"] > 0.6).all() and r.association().value > 0.6
    # a model that always writes the first-listed label has no association once both orders are averaged
    pos = iat_task(_Planted(base, lambda t: [(re.search(r": (\w+) or", t).group(1), 3.0)]), sets)
    assert abs(pos.association().value) < 0.05 and (pos.per_set()["position_bias"] > 0.3).all()
    assert len(r.to_dataframe()) == 10  # one row per (set, word), orders averaged


def test_calibration_metrics_hand_computed():
    rows = pd.DataFrame({"correct": [True, False, False, True], "confidence": [90.0, 80.0, 10.0, 50.0],
                         "answerable": [True, True, False, False]})
    r = CalibrationResult(rows)
    c, y = np.array([0.9, 0.8, 0.1, 0.5]), np.array([1.0, 0, 0, 1])
    assert r.overconfidence().value == pytest.approx(np.mean(c - y))
    assert r.brier().value == pytest.approx(np.mean((c - y) ** 2))
    # ECE with 10 bins: bins 9 (0.9), 8 (0.8), 1 (0.1), 5 (0.5), one question each
    assert r.ece().value == pytest.approx(np.mean(np.abs(c - y)))
    assert r.unanswerable_gap().value == pytest.approx(85 - 30)
    assert r.accuracy().value == 0.5


def test_calibration_task_runs_and_reads_confidence_options(tiny_model):
    m = tiny_model("llama")
    qs = [{"question": "WHAT IS THE CAPITAL OF FRANCE?", "answer": "PARIS", "answerable": True, "bin": 1},
          {"question": "WHO IS ZELTHORN?", "answer": "NOANSWER", "answerable": False, "bin": 1},
          {"question": "WHAT COLOUR IS GRASS?", "answer": "GREEN", "answerable": True, "bin": 2}]
    r = calibration_task(m, qs, max_new_tokens=3, step1="Q: {question}", step2="Q: {question} A: {answer} Sure?")
    assert len(r.rows) == 3 and r.rows["confidence"].between(0, 100).all()
    assert not r.rows.loc[1, "correct"]  # unanswerable is never correct
    assert "overconfidence" in r.summary()
