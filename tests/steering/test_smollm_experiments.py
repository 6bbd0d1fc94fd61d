"""End-to-end checks on SmolLM2-135M-Instruct with the shipped datasets (slow: minutes on 2 cores).

Run with ``python -m pytest tests/steering/test_smollm_experiments.py -m slow -q``.
"""

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.smollm]


def test_refusal_direction_ablation_lowers_refusal_on_harmful_prompts(smollm):
    from steering import refusal_direction, refusal_scores
    from steering.data import load_harmful, load_harmless

    harmful = load_harmful("harmful_train", n=32, seed=0)
    harmless = load_harmless(n=32, seed=0)
    val_h = load_harmful("harmful_val", n=12, seed=0)
    val_n = load_harmless(n=12, seed=1)
    res = refusal_direction(smollm, harmful, harmless, val_harmful=val_h, val_harmless=val_n, layers=[6, 9, 12, 15],
                            positions=[-1], batch_size=8)
    base = refusal_scores(smollm, val_h)
    abl = refusal_scores(smollm, val_h, [res.ablation()])
    add = refusal_scores(smollm, val_n, [res.actadd()])
    # ablating the direction lowers the refusal log-odds on harmful prompts; adding it raises them on harmless ones
    assert abl.mean() < base.mean()
    assert add.mean() > refusal_scores(smollm, val_n).mean()
    assert res.baseline["harmful"].value > res.baseline["harmless"].value


def test_persona_comparison_six_personas(smollm):
    from steering import StatementsScorer, load_personas, persona_comparison, persona_vectors
    from steering.data import neutral_prompts

    ps = load_personas(["agreeableness", "extraversion", "neuroticism", "narcissism", "power_seeking", "deception"])
    pv = persona_vectors(smollm, ps, [12], n_questions=4, n_pairs=2, source="prompt")
    res = persona_comparison(smollm, ps, pv, layer=12, scorers=[StatementsScorer(n=16)],
                             kl_prompts=neutral_prompts(12))
    assert len(res.personas) == 6 and set(res.to_dataframe().method) == {"baseline", "prompt", "steer"}
    c = res.correlations["statements"]
    assert -1 <= c.ci_low <= c.value <= c.ci_high <= 1 and c.p_value is not None and c.n == 6
    t = res.strength["target"]
    for d in res.strength["personas"].values():
        assert d["steer_kl"].value == pytest.approx(t, rel=0.06)
    # system prompts move the persona statements: the mean prompt shift is positive
    assert np.mean([res.shifts[(p.name, "prompt", "statements")].value for p in ps]) > 0


def test_caa_sweep_monotone_with_a_behaviour_smollm_has(smollm):
    """The sweep machinery on SmolLM2 and CAA data, with a behaviour the model demonstrably has:
    answering a given letter. Vectors built from CAA records whose matching answer is always "(A)"
    (so the letter does not cancel) encode "answer A"; on held-out items whose matching answer is
    "(A)", p(matching) at the best layer rises monotonically with the multiplier, and the +max vs
    -max difference excludes 0 and is several times the equal-norm random direction's.

    This vector is the raw A-minus-B letter difference, with a norm near 100 at layers 8-14 (semantic
    CAA vectors: 1-5), so the multipliers are +-0.1: at +-1 the push saturates the model, the
    curve stops being monotone, and a random direction of that norm moves p(matching) from 0.47 to
    0.85. Even at +-0.1 the random direction nudges the letter choice a little (effect 0.015
    [0.004, 0.026] on these items, against 0.081 [0.075, 0.086] for the vector), so the control is
    compared with the vector rather than required to contain 0. (The semantic CAA behaviours do
    not move SmolLM2's A/B choices: see the steering report.)"""
    from steering import build_caa_vectors, caa_sweep
    from steering.data import load_caa

    gen = [r for r in load_caa("myopic-reward", "generate") if r["answer_matching_behavior"] == "(A)"]
    test = [r for r in load_caa("myopic-reward", "test") if r["answer_matching_behavior"] == "(A)"][:20]
    v = build_caa_vectors(smollm, gen[:32], layers=[8, 14], batch_size=16)
    assert v.meta["unmirrored_groups"] == ["A/B"]
    res = caa_sweep(smollm, {"answer-A": v}, {"answer-A": test}, [8, 14], [-0.1, -0.05, 0, 0.05, 0.1],
                    select_items={"answer-A": gen[32:48]}, batch_size=16)
    s = res.behaviour_summary("answer-A")
    assert s["monotone"], s["curve"]
    assert s["effect"].ci_low > 0 and s["trend"].ci_low > 0
    assert s["effect"].ci_low > s["control_effect"].ci_high and s["effect"].value > 3 * abs(s["control_effect"].value)
    assert abs(s["control_effect"].value) < 0.05
