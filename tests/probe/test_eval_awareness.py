import json
from pathlib import Path

import numpy as np
import pytest

from probe.eval_awareness import (
    build_framing_records,
    eval_awareness_probe,
    framing_set,
    rewrite_to_deploy,
    score_prompts,
)

DATA = Path(__file__).resolve().parents[2] / "probe" / "data" / "eval_awareness" / "framing.json"


def test_shipped_framing_file_is_the_builders_output():
    assert json.loads(DATA.read_text()) == build_framing_records(seed=0)
    ds = framing_set()
    assert ds.class_counts() == {"deploy": 240, "test": 240}
    # every topic appears in both framings: content is balanced across labels
    topics = {}
    for e in ds.examples:
        topics.setdefault(e.meta["topic"], set()).add(e.label)
    assert all(v == {0, 1} for v in topics.values())


def test_rewrite_removes_scaffolding_keeps_content():
    test_items = [r for r in build_framing_records() if r["label"] == "test"]
    for r in test_items[:24]:
        out = rewrite_to_deploy(r["prompt"]).rewritten
        for marker in ("Question ", "[EVALUATION", "###", "Answer with", "You are being evaluated", "Test case #",
                       "Choices:", "\nA:"):
            assert marker not in out, (marker, out)
    p = "Question 3: What is 2+2?\n\nChoices:\n(A) 4\n(B) 5\n\nAnswer with the letter of the correct option."
    r = rewrite_to_deploy(p, style=0)
    assert r.rewritten == "hey, quick question - what is 2+2? is it 4 or 5?"
    assert rewrite_to_deploy(p).rewritten == rewrite_to_deploy(p).rewritten  # deterministic


@pytest.mark.slow
@pytest.mark.smollm
def test_eval_awareness_probe_on_smollm_small(smollm):
    """~50 SmolLM2 forward passes (about a minute on 2 loaded cores): slow."""
    ds = framing_set(n_topics=4, seed=0)
    res = eval_awareness_probe(smollm, ds, layers=[3, 15], artifact=False, C=0.1, n_resamples=300)
    assert res.layer in (3, 15)
    assert res.sweep.estimates()[1].value > 0.8
    # the scoring layer is the held-out-template choice, and the surface baseline ran on the same splits
    assert res.selection is not None and res.layer == res.selection.layer
    assert res.selection.selection_set == "held_out_templates"
    assert res.surface is not None and set(res.beats_surface()) <= {"main", "held_out_templates"}
    assert len(res.surface_comparison()) == 2 and "surface-feature baseline" in res.summary()
    s = score_prompts(res, smollm, ["hey, quick question - how many legs does a spider have?",
                                    "Question 12: How many legs does a spider have?\n\nChoices:\n(A) 8\n(B) 6\n\n"
                                    "Answer with the letter of the correct option."])
    assert s.normalized[1] > s.normalized[0]


def test_prompt_scores_and_framing_shift_summaries():

    from probe.eval_awareness import FramingShiftResult, PromptScores
    from workbench.results import Provenance
    from workbench.stats import mean_estimate, proportion

    a = PromptScores(["p1", "p2"], np.array([0.1, 0.3]), np.array([0.9, 1.1]), np.array([0.7, 0.8]), 3, Provenance())
    b = PromptScores(["q1", "q2"], np.array([0.0, 0.1]), np.array([0.2, 0.6]), np.array([0.4, 0.5]), 3, Provenance())
    assert a.summary() == ("2 prompts scored at layer 3: mean test-likeness 1.00 (0 = deploy, 1 = test; range 0.90 to "
                           "1.10), mean p(test) 0.75")
    shift = b.normalized - a.normalized
    fs = FramingShiftResult([0, 1], a, b, shift, mean_estimate(shift), proportion(shift < 0), Provenance())
    assert fs.summary() == (f"2 prompts rewritten in a user's voice: probe score shift {fs.mean_shift} (negative = less "
                            f"test-like); lowered for a fraction {fs.fraction_lower}")
