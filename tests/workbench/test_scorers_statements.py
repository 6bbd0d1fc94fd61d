"""Yes/No bias of statement scores: planted biases, the A/B scorer on a tiny model, and a user's statement file."""

import json

import numpy as np
import pytest

from workbench.errors import InputError
from workbench.scorers import ScoreResult, ab_scores, statement_is_yes_keyed, yes_no_bias
from workbench.stats import bootstrap


def _ab_result(p_matching):
    return ScoreResult("ab", p_matching, tuple(f"s{i}" for i in range(len(p_matching))), bootstrap(p_matching))


@pytest.mark.parametrize("bias", [-4.0, -1.0, 0.0, 2.0])
def test_corrected_score_removes_a_constant_yes_no_log_odds_bias(bias):
    rng = np.random.default_rng(0)
    s = np.array([1, -1] * 20)
    trait = 0.8 + rng.normal(0, 0.2, 40)  # per-statement log-odds toward the matching answer
    p_yes = 1 / (1 + np.exp(-(bias + s * trait)))
    p_match = np.where(s > 0, p_yes, 1 - p_yes)
    r = yes_no_bias(_ab_result(p_match), s > 0)
    c = r.corrected()
    exact = 1 / (1 + np.exp(-(np.mean(trait[s > 0]) + np.mean(trait[s < 0])) / 2))
    assert c.value == pytest.approx(exact, abs=1e-9)  # the same whatever the bias
    assert c.ci_low < c.value < c.ci_high
    assert r.yes_bias().value == pytest.approx(np.mean(np.log(p_yes / (1 - p_yes))), abs=1e-6)
    assert np.allclose(r.p_yes, p_yes) and r.p_yes_estimate().value == pytest.approx(p_yes.mean())
    if bias <= -4:
        # a model that says No to nearly everything: plain p(matching) is pulled to 0.5, the corrected score is not
        assert abs(r.aggregate.value - 0.5) < abs(c.value - 0.5)
    assert "baseline p(Yes)" in r.summary() and {"p_yes", "yes_keyed"} <= set(r.to_dataframe().columns)


def test_keys_from_records_and_errors():
    recs = [{"answer_matching_behavior": " Yes"}, {"answer_matching_behavior": " No"}]
    assert [statement_is_yes_keyed(r) for r in recs] == [True, False]
    r = yes_no_bias(_ab_result(np.array([0.9, 0.8])), recs)
    assert r.p_yes.tolist() == pytest.approx([0.9, 0.2])
    with pytest.raises(InputError, match="both keys"):
        yes_no_bias(_ab_result(np.array([0.9, 0.8])), [True, True]).corrected()
    with pytest.raises(InputError, match="2 scored"):
        yes_no_bias(_ab_result(np.array([0.9, 0.8])), [True])
    with pytest.raises(InputError, match="'Yes' or 'No'"):
        statement_is_yes_keyed({"answer_matching_behavior": " (A)"})


def test_statements_scorer_takes_a_user_file_and_reports_the_bias(tiny_model, tmp_path):
    from steering.compare import Condition, StatementsScorer
    from steering.data import load_persona_statements
    from steering.personas import Persona

    m = tiny_model("llama")
    recs = [{"question": f"Is the following statement something you would say?\n\"I like item {i}\"",
             "answer_matching_behavior": " Yes" if i % 2 else " No",
             "answer_not_matching_behavior": " No" if i % 2 else " Yes"} for i in range(8)]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs))
    assert len(load_persona_statements(str(path), n=4)) == 4
    p = Persona("mine", "custom", "liking items", "likes items", ("You like items.",), ("You dislike items.",),
                str(path))
    sc = StatementsScorer(n=8)
    res = sc.score(m, p, Condition("baseline"))
    used = sc.records(p)
    assert sorted(r["question"] for r in used) == sorted(r["question"] for r in recs)
    ref = ab_scores(m, used, strip_answers=True)  # "Yes"/"No" right after the assistant turn opens
    assert np.allclose(res.values, ref.values, atol=1e-6)
    assert np.allclose(res.p_yes, np.where([r["answer_matching_behavior"] == " Yes" for r in used], res.values,
                                           1 - res.values))
    assert 0 < res.corrected().value < 1
