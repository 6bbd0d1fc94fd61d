"""Repeated runs (workbench.repeats): the driver on a tiny model, and its statistics against references.

References: pass@k by enumerating every k-subset of an item's samples (the definition the unbiased
estimator computes in closed form); variance components computed by hand on a small matrix and
recovered on planted item rates; the power formula by hand and by simulation; divergence on
hand-made token lists; the teacher-forced answer probability against continuation_logprobs.
"""

import math
from itertools import combinations

import numpy as np
import pytest
import torch

from workbench.repeats import (
    RepeatsError,
    answer_probability,
    first_divergence,
    next_token_entropy,
    pairwise_divergence,
    repeated_runs,
    run_spread,
    runs_needed,
    simulate_power,
    variance_components,
)
from workbench.scorers import ScoreResult, continuation_logprobs
from workbench.stats import proportion

PROMPTS = ["hello there", "the cat sat on the", "one two three", "a b c d", "x y", "we went to"]


class EvenLength:
    """A deterministic toy scorer: an output passes when it has an even number of characters."""

    name = "even-length"

    def __call__(self, prompts, outputs, *, groups=None, provenance=None):
        v = np.array([len(o) % 2 == 0 for o in outputs], dtype=float)
        return ScoreResult(self.name, v, tuple(prompts), proportion(v))


@pytest.fixture(scope="module")
def runs(tiny_model):
    m = tiny_model("llama", "nnsight")
    return repeated_runs(m, PROMPTS, EvenLength(), n_samples=3, seeds=(0, 5), temperatures=(0.0, 1.0),
                         max_new_tokens=4, stop_at_eos=False, batch_size=4)


def _enumerated_pass_at_k(c: int, n: int, k: int) -> float:
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_driver_shapes_outcomes_and_batch_invariance(tiny_model, runs):
    m = tiny_model("llama", "nnsight")
    assert runs.outcomes.shape == (2, len(PROMPTS), 6) and runs.n_runs == 6
    # outcomes are the scorer's verdicts on the stored completions
    for ti in range(2):
        for i in range(len(PROMPTS)):
            for r in range(6):
                assert runs.outcomes[ti, i, r] == float(len(runs.completions[ti][i][r]) % 2 == 0)
    # greedy: every run is the same generation
    assert all(len(set(row)) == 1 for row in runs.completion_ids[0])
    # sampling: any run recomputed alone (its seed and sample id) gives the same tokens
    for i, r in [(1, 4), (3, 2)]:
        s, j = runs.run_label(r)
        g = m.generate(PROMPTS[i], max_new_tokens=4, do_sample=True, temperature=1.0, seed=s, sample_ids=[j],
                       stop_at_eos=False)
        assert tuple(g.completion_ids[0]) == runs.completion_ids[1][i][r]
    df = runs.to_dataframe()
    assert len(df) == 2 * len(PROMPTS) * 6 and set(df.seed) == {0, 5} and set(df.sample_id) == {0, 1, 2}


def test_pass_at_k_equals_enumeration_and_pass_hat_k_the_all_pass_share(runs):
    c = runs.counts(1.0)
    n = runs.n_runs
    for k in range(1, n + 1):
        want = np.mean([_enumerated_pass_at_k(int(ci), n, k) for ci in c])
        assert runs.pass_at_k(k, 1.0).value == pytest.approx(want, abs=1e-12)
        hat = np.mean([sum(all(([1] * ci + [0] * (n - ci))[i] for i in s) for s in combinations(range(n), k))
                       / math.comb(n, k) for ci in c])
        assert runs.pass_hat_k(k, 1.0).value == pytest.approx(hat, abs=1e-12)
    df = runs.curves()
    assert set(df.metric) == {"pass@k", "pass^k"} and (df.ci_low <= df.value + 1e-12).all()
    assert "pass@1" in runs.summary()


def test_variance_components_by_hand():
    y = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 1], [1, 1, 1]], dtype=float)
    # item means 2/3, 0, 2/3, 1; grand mean 7/12
    m_i = np.array([2 / 3, 0, 2 / 3, 1])
    msb = 3 * ((m_i - 7 / 12) ** 2).sum() / 3
    msw = (2 * (1 / 3) ** 2 + (2 / 3) ** 2) * 2 / (4 * 2)
    vc = variance_components(y, n_resamples=200)
    assert vc.msb == pytest.approx(msb) and vc.msw == pytest.approx(msw)
    assert vc.run.value == pytest.approx(msw) and vc.item.value == pytest.approx((msb - msw) / 3)
    assert vc.run_share.value == pytest.approx(msw / (msw + (msb - msw) / 3))
    assert vc.single_run_sd.value == pytest.approx(math.sqrt(msw / 4))
    with pytest.raises(RepeatsError, match="no variance"):
        variance_components(np.ones((3, 4)))


def test_variance_components_recover_planted_rates():
    rng = np.random.default_rng(0)
    p = rng.beta(0.6, 0.6, size=400)
    y = (rng.random((400, 30)) < p[:, None]).astype(float)
    vc = variance_components(y, n_resamples=300)
    assert vc.item.value == pytest.approx(p.var(ddof=1), abs=0.01)
    assert vc.run.value == pytest.approx((p * (1 - p)).mean(), abs=0.01)
    assert vc.item.contains(p.var(ddof=1)) and vc.run.contains((p * (1 - p)).mean())


def test_run_spread_matches_the_predicted_sd_and_hand_values():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.1, 0.9, size=50)
    y = (rng.random((50, 400)) < p[:, None]).astype(float)
    sp = run_spread(y, n_resamples=200)
    assert sp.sd == pytest.approx(sp.predicted_sd, rel=0.1)
    assert sp.pooled.value == pytest.approx(y.mean())
    small = run_spread(np.array([[1, 0, 1], [1, 1, 0]], dtype=float), n_resamples=50)
    assert list(small.per_run) == [1.0, 0.5, 0.5] and small.minimum == 0.5 and small.maximum == 1.0
    # pairwise |differences| 0.5, 0.5, 0: the 95th percentile (linear interpolation) is 0.5
    assert small.noise_floor == pytest.approx(0.5)


def test_runs_needed_formula_and_simulation():
    p = np.array([0.2, 0.5, 0.7, 0.9, 0.4] * 8)
    pa = runs_needed(p, 0.04, n_simulations=3000, seed=2)
    sd = math.sqrt((p * (1 - p)).sum()) / p.size
    z = 1.959963984540054 + 0.8416212335729143
    assert pa.single_run_sd == pytest.approx(sd)
    assert pa.runs == math.ceil(2 * z ** 2 * sd ** 2 / 0.04 ** 2)
    assert abs(pa.simulated_power.value - 0.8) < 0.03  # normal approximation holds at 47 runs x 40 items
    # heterogeneous items vary less than a common rate: the exchangeable design needs more runs
    assert pa.runs_if_exchangeable >= pa.runs
    # with half the runs the power falls well below 0.8
    assert simulate_power(p, 0.04, max(2, pa.runs // 2), n_simulations=2000, seed=3).value < 0.65
    with pytest.raises(RepeatsError, match="do not vary"):
        runs_needed([0.0, 1.0], 0.1)


def test_divergence_by_hand():
    assert first_divergence([[1, 2, 3], [1, 2, 4], [1, 2, 3]]) == 2
    assert first_divergence([[1, 2], [1, 2]]) is None
    assert first_divergence([[1, 2], [1, 2, 3]]) == 2  # one sample stopped, the other went on
    assert first_divergence([[5], [6]]) == 0
    # pairs: (a,b) 2, (a,c) None -> 4, (b,c) 2
    assert pairwise_divergence([[1, 2, 3], [1, 2, 4], [1, 2, 3]], 4) == pytest.approx(8 / 3)


def test_answer_probability_and_entropy_against_references(tiny_model):
    m = tiny_model("gpt2")
    prompts, answers = ["hello there", "the cat sat on"], [" friend", " the mat"]
    p1 = answer_probability(m, prompts, answers, temperature=1.0)
    ref = np.exp(continuation_logprobs(m, prompts, answers).total)
    assert p1 == pytest.approx(ref, rel=1e-4)
    logits = m.forward(prompts[1], logits="last")[0].float().cpu()
    lp = torch.log_softmax(logits / 0.5, -1)
    assert next_token_entropy(m, prompts, temperature=0.5)[1] == pytest.approx(float(-(lp.exp() * lp).sum()), rel=1e-4)
    ids = m.tokenizer(" friend", add_special_tokens=False)["input_ids"]
    l0 = m.forward(prompts[0], logits="last")[0].float().cpu()
    if len(ids) == 1:
        assert answer_probability(m, prompts[:1], [" friend"], temperature=0.5)[0] == pytest.approx(
            float(torch.softmax(l0 / 0.5, -1)[ids[0]]), rel=1e-4)


def test_driver_input_errors(tiny_model):
    m = tiny_model("llama", "nnsight")
    with pytest.raises(RepeatsError, match="distinct"):
        repeated_runs(m, ["a", "a"], EvenLength())
    with pytest.raises(RepeatsError, match=">= 0"):
        repeated_runs(m, ["a", "b"], EvenLength(), temperatures=(-1.0,))


def test_round_trip_through_json(runs):
    import json

    from workbench.repeats import RepeatedRuns

    back = RepeatedRuns.from_dict(json.loads(json.dumps(runs.to_dict())))
    assert back.completion_ids == runs.completion_ids and back.completions == runs.completions
    assert np.array_equal(back.outcomes, runs.outcomes) and back.provenance == runs.provenance
    assert back.pass_at_k(2, 1.0) == runs.pass_at_k(2, 1.0)


def test_concat_of_one_seed_per_part_equals_one_call_over_every_seed(tiny_model, runs):
    """How the ``randomness`` experiment's seeds grid is merged: a part per seed, concatenated, is the one call."""
    import json

    from workbench.repeats import RepeatedRuns

    m = tiny_model("llama", "nnsight")
    parts = [repeated_runs(m, PROMPTS, EvenLength(), n_samples=3, seeds=(s,), temperatures=(0.0, 1.0),
                           max_new_tokens=4, stop_at_eos=False, batch_size=4) for s in (0, 5)]
    cat = RepeatedRuns.concat(parts)
    assert json.dumps(cat.to_dict(), sort_keys=True) == json.dumps(runs.to_dict(), sort_keys=True)
    assert len({r for row in cat.completion_ids[1] for r in row}) > 1  # the sampled runs differ (not a trivial match)
    with pytest.raises(RepeatsError, match="share seeds"):
        RepeatedRuns.concat([parts[0], parts[0]])
    other = repeated_runs(m, PROMPTS, EvenLength(), n_samples=3, seeds=(7,), temperatures=(0.0, 1.0),
                          max_new_tokens=2, stop_at_eos=False, batch_size=4)
    with pytest.raises(RepeatsError, match="differ in settings"):
        RepeatedRuns.concat([parts[0], other])
