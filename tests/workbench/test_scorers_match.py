"""answer-match scorer: hand-made completions with known verdicts, modes, errors, clustering."""

import numpy as np
import pytest

from workbench.scorers import AnswerMatchScorer, answer_matches, get_scorer


def test_modes_on_hand_made_completions():
    assert answer_matches(" Paris.", ["Paris"]) == "Paris"
    assert answer_matches("paris, France", [" Paris"]) == " Paris"
    assert answer_matches(" The capital is Paris", ["Paris"]) is None
    assert answer_matches(" The capital is Paris", ["Paris"], "contains") == "Paris"
    assert answer_matches(" Parisian food", ["Paris"], "contains") is None
    assert answer_matches(" New York City", ["New Delhi"]) is None
    assert answer_matches(" New Delhi!", ["New Delhi"]) == "New Delhi"
    assert answer_matches(" new delhi is big", ["New Delhi"], "prefix") == "New Delhi"
    assert answer_matches(" New Delhiite", ["New Delhi"], "prefix") is None
    assert answer_matches(" It’s four", ["it's"]) == "it's"  # typographic apostrophe folded
    assert answer_matches("", ["Paris"]) is None
    with pytest.raises(ValueError, match="mode"):
        answer_matches("x", ["x"], "regex")


def test_scorer_values_aggregate_and_errors():
    s = get_scorer("answer-match", answers={"capital of France?": "Paris", "2+2=": ["4", "four"]})
    assert isinstance(s, AnswerMatchScorer)
    r = s(["capital of France?", "2+2=", "2+2=", "capital of France?"], [" Paris", " four.", " 5", " London"])
    assert list(r.values) == [1.0, 1.0, 0.0, 0.0]
    assert r.groups is not None  # repeated prompts: the CI is a cluster bootstrap over prompts
    assert r.aggregate.value == pytest.approx(0.5)
    assert r.details[1]["matched"] == "four" and r.details[2]["first_word"] == "5"
    single = s(["capital of France?", "2+2="], [" Paris", " 3"])
    assert single.aggregate.method == "wilson" and np.isclose(single.aggregate.value, 0.5)
    with pytest.raises(ValueError, match="no accepted answer"):
        s(["unknown prompt"], ["x"])
    with pytest.raises(ValueError, match="needs the prompts"):
        s(None, ["x"])
