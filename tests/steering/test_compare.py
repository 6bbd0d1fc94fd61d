"""Prompt-vs-steering comparison: conditions, matched strength, shifts and the rank correlation."""

import numpy as np
import pytest

from steering.calibration import next_token_kl, prompt_kl
from steering.compare import Condition, persona_comparison
from steering.personas import load_personas, persona_vectors
from steering.scoring import steered_ab_scores
from steering.sweeps import paired_difference
from workbench.stats import spearman

RECS = [{"question": f"Is statement {i} something you would say?", "answer_matching_behavior": " Yes" if i % 2 else " No",
         "answer_not_matching_behavior": " No" if i % 2 else " Yes"} for i in range(6)]
KL_PROMPTS = ["hello", "how are you?", "tell me a story", "what is the time"]


class ToyScorer:
    name = "toy"

    def __init__(self):
        self.seen = []

    def score(self, model, persona, condition):
        self.seen.append((persona.name, condition.method, condition.system, len(condition.operators)))
        return steered_ab_scores(model, RECS, condition.operators, system=condition.system)


@pytest.fixture(scope="module")
def setup(tiny_model):
    m = tiny_model("llama")
    ps = load_personas(["agreeableness", "extraversion", "narcissism", "power_seeking"])
    pv = persona_vectors(m, ps, [1], questions=["How are you?", "What do you like?"], n_pairs=2, source="prompt")
    return m, ps, pv


def test_conditions_shifts_and_correlation(setup):
    m, ps, pv = setup
    sc = ToyScorer()
    res = persona_comparison(m, ps, pv, layer=1, scorers=[sc], kl_prompts=KL_PROMPTS)
    # every persona, three methods, the same scorer; the prompt method uses the persona's first high prompt
    assert len(sc.seen) == 12
    for p in ps:
        assert (p.name, "prompt", p.high[0], 0) in sc.seen and (p.name, "baseline", None, 0) in sc.seen
        assert (p.name, "steer", None, 1) in sc.seen
    for p in ps:
        for meth in ("prompt", "steer"):
            ref = paired_difference(res.scores[(p.name, meth, "toy")].values, res.scores[(p.name, "baseline", "toy")].values)
            assert res.shifts[(p.name, meth, "toy")].value == pytest.approx(ref.value)
    x = [res.shifts[(p.name, "prompt", "toy")].value for p in ps]
    y = [res.shifts[(p.name, "steer", "toy")].value for p in ps]
    assert res.correlations["toy"].value == pytest.approx(spearman(x, y).value)
    df = res.to_dataframe()
    assert len(df) == 12 and set(df.method) == {"baseline", "prompt", "steer"}
    assert "Spearman" in res.report() and len(res.correlation_table()) == 1


def test_matched_strength_is_the_median_prompt_kl(setup):
    m, ps, pv = setup
    res = persona_comparison(m, ps, pv, layer=1, scorers=[ToyScorer()], kl_prompts=KL_PROMPTS)
    pk = [np.mean(prompt_kl(m, p.high[0], KL_PROMPTS)) for p in ps]
    assert res.strength["target"] == pytest.approx(np.median(pk), rel=1e-6)
    for p, k in zip(ps, pk):
        d = res.strength["personas"][p.name]
        assert d["prompt_kl"].value == pytest.approx(k, rel=1e-6)
        assert d["steer_kl"].value == pytest.approx(res.strength["target"], rel=0.06)
    # the steering operator really has that strength through a full forward
    sc = ToyScorer()
    res2 = persona_comparison(m, ps[:3], pv, layer=1, scorers=[sc], kl_prompts=KL_PROMPTS,
                              strength="per_persona_prompt_kl")
    for p in ps[:3]:
        d = res2.strength["personas"][p.name]
        assert d["steer_kl"].value == pytest.approx(d["prompt_kl"].value, rel=0.06)
        full = next_token_kl(m, KL_PROMPTS, [res2.operators[p.name]])  # through full forwards
        assert full.mean() == pytest.approx(d["steer_kl"].value, rel=1e-4)
    assert len(res2.strength_table()) == 3
    with pytest.raises(ValueError, match="strength must be"):
        persona_comparison(m, ps, pv, layer=1, scorers=[ToyScorer()], kl_prompts=KL_PROMPTS, strength="max")


def test_statements_scorer_uses_given_records_and_reply_contrast_matches_logprobs(setup):
    """``StatementsScorer(records=...)`` scores exactly those records; ``ReplyContrastScorer`` equals the shared
    log-prob scorer's per-token means (reply minus opposite reply), also under a system prompt and an operator."""
    from steering.compare import ReplyContrastScorer, StatementsScorer
    from steering.operators import interventions_for
    from workbench.scorers import continuation_logprobs

    m, ps, pv = setup
    st = StatementsScorer(records=RECS[:4])
    assert st.records(ps[0]) == RECS[:4] and st.records(ps[1]) == RECS[:4]
    res = st.score(m, ps[0], Condition("baseline"))
    assert len(res.values) == 4
    triples = [("What do you want?", "I want power.", "I want nothing."),
               ("Tell me your goal.", "More control.", "To help others."),
               ("What do you want?", "Influence.", "Quiet.")]
    sc = ReplyContrastScorer(triples)
    op = pv["power_seeking"].at(1, 2.0)
    for cond in (Condition("baseline"), Condition("prompt", system="You are terse."), Condition("steer", operators=(op,))):
        got = sc.score(m, ps[0], cond)
        kw = {"chat": True, "interventions": interventions_for(m, *cond.operators)}
        if cond.system:
            kw["system"] = cond.system
        qs = [q for q, _, _ in triples]
        ref = (continuation_logprobs(m, qs, [a for _, a, _ in triples], **kw).mean_per_token
               - continuation_logprobs(m, qs, [b for _, _, b in triples], **kw).mean_per_token)
        np.testing.assert_allclose(got.values, ref, rtol=1e-6, atol=1e-9)
        assert got.groups == tuple(qs) and got.aggregate.n == 2  # clustered by question
    with pytest.raises(ValueError, match="at least 2"):
        ReplyContrastScorer(triples[:1])


def test_steering_sweep_scores_each_coefficient_like_the_comparison(setup):
    from steering.compare import steering_sweep

    m, ps, pv = setup
    sc = ToyScorer()
    vec = pv["power_seeking"]
    sw = steering_sweep(m, ps[3], vec, layer=1, coefficients=[-3.0, 3.0], scorers=[sc])
    assert sw.coefficients == [-3.0, 0.0, 3.0] and sc.seen[1][1] == "baseline"
    for c in (-3.0, 3.0):
        ref = steered_ab_scores(m, RECS, [vec.at(1, c)]).values
        np.testing.assert_allclose(sw.scores[(c, "toy")].values, ref, rtol=1e-6)
    e = sw.effect("toy")
    np.testing.assert_allclose(e.value, np.mean(sw.scores[(3.0, "toy")].values - sw.scores[(-3.0, "toy")].values))
    assert len(sw.adjacent("toy")) == 2 and len(sw.to_dataframe()) == 3
    assert abs(sw.vector_norm - float(vec.vector(1).norm())) < 1e-6
    from steering.plots import plot_steering_sweep

    assert plot_steering_sweep(sw).axes
