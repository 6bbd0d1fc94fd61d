"""Head detectors against TransformerLens's head_detector, planted patterns, and the OV copying score."""

from __future__ import annotations

import pytest
import torch
from transformer_lens.head_detector import detect_head

from circuits import copying_scores, detection_pattern, head_scores, pattern_scores, repeated_random_tokens
from circuits.heads import W_V


@pytest.mark.parametrize("kind,tl_name", [("previous_token", "previous_token_head"),
                                          ("duplicate_token", "duplicate_token_head"),
                                          ("induction", "induction_head")])
@pytest.mark.parametrize("measure", ["mul", "abs"])
def test_matches_transformer_lens_detect_head(tiny_model, kind, tl_name, measure):
    model = tiny_model("gpt2", "tl")
    seq = "abcab abcab xyzab"
    tokens = model.bridge.to_tokens(seq)
    ref = detect_head(model.bridge, seq, tl_name, error_measure=measure)
    ours = head_scores(model, tokens, kinds=(kind,), measures=(measure,))
    assert torch.allclose(ours.get(kind, measure), ref.float(), atol=1e-4), (ours.get(kind, measure), ref)


def test_exclusions_match_transformer_lens(tiny_model):
    model = tiny_model("llama", "tl")
    seq = "hello hello world"
    tokens = model.bridge.to_tokens(seq)
    ref = detect_head(model.bridge, seq, "duplicate_token_head", exclude_bos=True, exclude_current_token=True)
    ours = head_scores(model, tokens, kinds=("duplicate_token",), measures=("mul",), exclude_bos=True,
                       exclude_current_token=True)
    assert torch.allclose(ours.get("duplicate_token", "mul"), ref.float(), atol=1e-4)


def test_target_measure_on_planted_patterns():
    """Hand-built attention patterns: a perfect head of each type scores 1 on 'target'; 'mul' is ~1/2 for
    induction on [BOS] + s + s because the first copy has no target."""
    gen = torch.Generator().manual_seed(0)
    s = torch.randperm(200, generator=gen)[:20]
    toks = torch.cat([torch.tensor([256]), s, s])
    T = len(toks)
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(0, T - 1)] = 1
    ind = torch.zeros(T, T)
    ind[:, 0] = 1  # rows without a target rest on BOS
    for t in range(21, T):
        ind[t] = 0
        ind[t, t - 19] = 1  # the token after the previous occurrence of toks[t]
    pats = torch.stack([prev, ind])
    det_p, det_i = detection_pattern("previous_token", toks), detection_pattern("induction", toks)
    sp = pattern_scores(pats, det_p, "target")
    si = pattern_scores(pats, det_i, "target")
    assert sp[0] == pytest.approx(1.0) and si[1] == pytest.approx(1.0)
    assert si[0] < 0.1 and sp[1] < 0.1
    assert pattern_scores(pats, det_i, "mul")[1] == pytest.approx(20 / 41, abs=1e-6)


def test_head_scores_result_and_cis(tiny_model):
    model = tiny_model("neox", "nnsight")  # patterns through the nnsight backend too
    toks = repeated_random_tokens(model, n_seqs=4, half=8, seed=3)
    assert toks.shape == (4, 17) and bool((toks[:, 1:9] == toks[:, 9:]).all())
    res = head_scores(model, toks)
    e = res.estimate("induction", 1, 2)
    assert e.ci_low <= e.value <= e.ci_high and e.n == 4
    df = res.to_dataframe(ci=True)
    assert len(df) == 3 * 3 * 2 * 4 and {"ci_low", "ci_high"} <= set(df.columns)
    assert res.provenance.data_hash and res.top("induction", 2)[0][2] >= res.top("induction", 2)[1][2]


def test_copying_score_equals_full_ov_circuit(tiny_model):
    """The d_model x d_model shortcut gives the same score as the vocabulary-sized OV circuit W_E W_V W_O W_U."""
    model = tiny_model("llama", "tl")
    f = model.facts
    W_E = model.W_E.detach().float()
    W_U = model.final_norm_module.weight.detach().float()[:, None] * model.W_U.detach().float()
    C = W_U @ W_E
    res = copying_scores(model)
    assert res.scores.shape == (f.n_layers, f.n_heads)
    assert bool((res.scores.abs() <= 1 + 1e-6).all())
    # recompute one head by the definition with the full vocabulary-sized OV circuit (small vocab: 260)
    L, h = 1, 3
    ln1 = model.layer_module(L, "ln1")
    wv = ln1.weight.detach().float()[:, None] * W_V(model, L)[h // (f.n_heads // f.n_kv_heads)].detach().float()
    full = W_E @ wv @ model.W_O(L)[h].detach().float() @ W_U  # [V, V]
    ev = torch.linalg.eigvals(full.double())
    ev = ev[ev.abs() > 1e-9 * ev.abs().max()]
    assert float(ev.real.sum() / ev.abs().sum()) == pytest.approx(float(res.scores[L, h]), abs=1e-4)
    assert C.shape == (f.d_model, f.d_model)
