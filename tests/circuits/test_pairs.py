"""Pair patching (per-pair span-aligned sweeps aggregated per component) and the answer lens, against
the single sweeps they are made of, a hand-built head patch, and the model's own logits."""

import numpy as np
import pytest
import torch

from circuits import LogitDiff, answer_lens, pair_patching, patching_sweep
from circuits.pairs import PairPatchingError

PAIRS = [("a cat sat on it", "a horse sat on it"), ("the dog ran home", "the pony ran home")]


def _metrics():
    return [LogitDiff([ord("a")], [ord("e")]), LogitDiff([ord("o")], [ord("i")])]


def test_pair_patching_equals_its_sweeps(tiny_model):
    m = tiny_model("llama")
    res = pair_patching(m, PAIRS, _metrics(), ids=["p0", "p1"])
    N, H = m.n_layers, m.facts.n_heads
    assert res.effects.shape == (2, 2 * N + 2 * N + N * H) and res.pairs == ("p0", "p1")
    comp = {c: i for i, c in enumerate(res.components)}
    for i, (clean, corrupt) in enumerate(PAIRS):
        T = len(m.tokenize(corrupt).real_tokens(0))
        cue = res.cue_positions[i]
        # the cue is the last token of the replaced span in the corrupt run ('e' of horse, 'y' of pony)
        assert m.to_str_tokens(corrupt)[cue] == {0: "e", 1: "y"}[i]
        r = patching_sweep(m, clean, corrupt, "resid_pre", metric=_metrics()[i], align="spans", positions=[cue, T - 1])
        base = float(r.corrupt_value[0])
        for L in range(N):
            assert res.effects[i, comp[f"resid_pre.{L}@cue"]] == pytest.approx(float(r.values[L, 0, 0]) - base, abs=1e-6)
            assert res.effects[i, comp[f"resid_pre.{L}@final"]] == pytest.approx(float(r.values[L, 1, 0]) - base, abs=1e-6)
        z = patching_sweep(m, clean, corrupt, "z", metric=_metrics()[i], align="spans", per_position=True,
                           positions=[T - 1])
        assert res.effects[i, comp["1.h2@final"]] == pytest.approx(float(z.values[1, 0, 2, 0]) - base, abs=1e-6)
        assert res.clean[i] == pytest.approx(float(r.clean_value[0])) and res.corrupt[i] == pytest.approx(base)
    # the final token is the same character in both runs: its embedding (resid_pre.0) changes nothing
    assert np.all(res.effects[:, comp["resid_pre.0@final"]] == 0)
    h = comp["1.h1@final"]
    norm = res.normalized()
    assert norm[h] == pytest.approx(res.effects[:, h].mean() / res.gap.mean())
    assert np.allclose(res.pair_score([h, comp["0.h0@final"]]),
                       np.abs(res.effects[:, h]) + np.abs(res.effects[:, comp["0.h0@final"]]))
    lo, hi = res.confidence_intervals(n_resamples=200)
    assert lo.shape == (len(res.components),) and np.all(lo <= hi + 1e-9)
    top = res.top(3, family=".h")
    assert len(top) == 3 and all(".h" in res.components[t] for t in top)
    assert len(res.to_dataframe(ci=False)) == len(res.components)
    # reading one token earlier: the heads at that position, against the sweep read there
    clean, corrupt = PAIRS[0]
    early = pair_patching(m, [PAIRS[0]], _metrics()[:1], families=["heads_final"], read_position=-2)
    T = len(m.tokenize(corrupt).real_tokens(0))
    z = patching_sweep(m, clean, corrupt, "z", metric=_metrics()[0], align="spans", per_position=True,
                       positions=[T - 2], read_position=-2)
    assert np.allclose(early.effects[0], (z.values[:, 0, :, 0] - z.corrupt_value[0]).flatten().numpy(), atol=1e-6)
    with pytest.raises(PairPatchingError, match="unknown component"):
        pair_patching(m, PAIRS, _metrics(), families=["heads_everywhere"])


def test_answer_lens_last_stage_is_the_model_output(tiny_model):
    m = tiny_model("gpt2")
    prompts = ["a cat sat on", "the dog ran to the"]
    res = answer_lens(m, prompts, [ord("a"), ord("b")], [ord("c"), ord("d")])
    logits = torch.stack([m.forward(p, logits="last")[0] for p in prompts]).float()
    want = (logits[0, ord("a")] - logits[0, ord("c")]).item(), (logits[1, ord("b")] - logits[1, ord("d")]).item()
    assert np.allclose(res.final, want, atol=1e-4) and np.allclose(res.values[-1], want, atol=1e-4)
    _, cache = m.run_with_cache(prompts[0], ["resid_post.0"], positions="last")
    lg = m.unembed(cache["resid_post.0"]).float()[0]
    assert res.values[1, 0] == pytest.approx((lg[ord("a")] - lg[ord("c")]).item(), abs=1e-4)
    assert res.stages[0] == "embed" and len(res.stages) == m.n_layers + 1
    assert len(res.to_dataframe()) == m.n_layers + 1
