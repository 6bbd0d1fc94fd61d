"""The shipped attention-only induction model: ground truth found by the detectors, ablations, protocol."""

from __future__ import annotations

import math

import pytest
import torch

from circuits import (
    copying_scores,
    head_ablation,
    head_scores,
    induction_model_dir,
    induction_model_info,
    induction_protocol,
    load_induction_model,
    repeated_half_loss,
    repeated_random_tokens,
)
from circuits.train_induction import BOS

HALF = 25  # the model is trained on 64-token sequences: [BOS] + 2 x 25 stays inside that context

try:
    induction_model_dir()
except FileNotFoundError as e:  # not shipped yet: say so in every run instead of passing vacuously
    pytest.skip(f"the induction model is not shipped in this checkout: {e}", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread while these tests run (on the shared 2-core machine a second thread makes them several
    times slower under contention); the setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ind():
    return load_induction_model("tl")


@pytest.fixture(scope="module")
def truth():
    return induction_model_info()["ground_truth"]


def test_ships_small_safetensors_and_loads_on_both_backends(ind):
    d = induction_model_dir()
    w = d / "model.safetensors"
    assert w.exists() and w.stat().st_size < 2 * 2**20
    assert not list(d.glob("*.bin")) and not list(d.glob("*.pt"))
    nn = load_induction_model("nnsight")
    toks = repeated_random_tokens(ind, 3, HALF, seed=5)
    a, b = ind.forward(toks), nn.forward(toks)
    assert torch.allclose(a, b, atol=1e-4)
    assert ind.facts.n_layers == 2 and ind.facts.n_heads == 4 and int(toks[0, 0]) == BOS


def test_attention_only_exactly(ind):
    """The MLPs are zero and frozen: mlp_out is exactly 0 at every layer and position."""
    toks = repeated_random_tokens(ind, 2, HALF, seed=6)
    _, cache = ind.run_with_cache(toks, ["mlp_out.0", "mlp_out.1"])
    assert cache["mlp_out.0"].abs().max() == 0 and cache["mlp_out.1"].abs().max() == 0


def test_detectors_find_the_planted_heads(ind, truth):
    res = head_scores(ind, n_seqs=10, half=HALF, seed=123, measures=("target", "mul"))
    prev, induct = res.get("previous_token"), res.get("induction")
    (pl, ph), (il, ih) = truth["previous_token_head"], truth["induction_head"]
    assert pl == 0 and il == 1
    assert prev[pl, ph] > 0.8 and induct[il, ih] > 0.8
    assert int(prev[0].argmax()) == ph and int(induct[1].argmax()) == ih
    e = res.estimate("induction", il, ih)
    assert e.ci_low > 0.8 and res.estimate("previous_token", pl, ph).ci_low > 0.8
    # no other head does either job
    assert float(prev[0].sort().values[-2]) < 0.3 and float(induct[1].sort().values[-2]) < 0.3
    # TransformerLens's whole-matrix "mul" measure: > 0.8 for the previous-token head; for the induction head it
    # is capped near 1/2 on [BOS] + s + s (the first copy's query rows have no target), and it is near that cap
    assert res.get("previous_token", "mul")[pl, ph] > 0.8
    assert res.get("induction", "mul")[il, ih] > 0.45
    # the induction head copies: a positive OV circuit
    assert copying_scores(ind).scores[il, ih] > 0.5


def test_ablating_the_induction_head_removes_induction(ind, truth):
    toks = repeated_random_tokens(ind, 20, HALF, seed=7)
    l0, a0 = repeated_half_loss(ind, toks, HALF)
    il, ih = truth["induction_head"]
    l1, a1 = repeated_half_loss(ind, toks, HALF, head_ablation(ind, [(il, ih)], "zero"))
    # the data's vocabulary: tokens are uniform over the 256 byte tokens, so a token predicted without induction
    # costs ln(256) nats (not ln(260): the specials never occur in the data)
    ln_v = math.log(induction_model_info()["V_data"])
    assert ln_v == pytest.approx(math.log(256))
    assert float(l0.mean()) < 0.5 and float(a0.mean()) > 0.9
    assert abs(float(l1.mean()) - ln_v) < 0.15 * ln_v and float(a1.mean()) < 0.05
    lm, _ = repeated_half_loss(ind, toks, HALF, head_ablation(ind, [(il, ih)], "mean", reference=toks))
    lr, _ = repeated_half_loss(ind, toks, HALF, head_ablation(ind, [(il, ih)], "resample", reference=toks, seed=1))
    assert abs(float(lm.mean()) - ln_v) < 0.15 * ln_v and float(lr.mean()) > 0.5 * ln_v
    # the previous-token head is necessary too (K-composition): ablating it also removes induction
    (pl, ph) = truth["previous_token_head"]
    lp, _ = repeated_half_loss(ind, toks, HALF, head_ablation(ind, [(pl, ph)], "zero"))
    assert abs(float(lp.mean()) - ln_v) < 0.15 * ln_v


def test_targeted_beats_matched_random_ablation(ind):
    res = induction_protocol(ind, k_percent=25, n_random=6, n_seqs=20, half=HALF, seed=0)
    assert res.heads_per_layer == 1  # max(1, ceil(25% x 4)) = 1 per layer
    d = res.targeted_minus_random
    assert d.ci_low > 0 and d.excludes(0.0)
    assert res.effect_targeted.value > 2.0
    df = res.to_dataframe()
    assert set(df["condition"]) >= {"clean", "targeted"} and len(df) == 2 + 6


def test_training_record(truth):
    info = induction_model_info()
    assert info["seed"] == 0 and info["eval"]["loss_second_half"] < 0.5
    assert info["V_data"] == 256 and info["ln_V_data"] == pytest.approx(math.log(256), abs=1e-3)
    assert info["attention_only"] and truth
    assert truth["previous_token_head"] == [0, 0] and truth["induction_head"] == [1, 0]  # the planted heads
    assert info["plant_steps"] > 0 and "plant" in info["training_recipe"]  # the record says how it was made
