"""Span-aligned patching: alignment rule by hand, equality with plain patching on equal-length pairs,
and per-cell values on unequal pairs against hand-built interventions (tiny byte-level models: one
token per character, so every alignment below is written out by hand)."""

from __future__ import annotations

import math

import pytest
import torch

from circuits import AlignmentError, LogitDiff, PatchingError, align_tokens, patching_sweep
from workbench.interventions import custom


def test_alignment_rule_by_hand():
    a = align_tokens([1, 2, 3, 4, 5], [1, 2, 9, 4, 5])
    assert a.identity and a.pairs == tuple((i, i) for i in range(5))
    # one replaced span of 1 vs 2 tokens: aligned from its end; corrupt position 2 has no partner
    a = align_tokens([1, 2, 3, 4, 5], [1, 2, 7, 8, 4, 5])
    assert a.pairs == ((0, 0), (1, 1), (2, 3), (3, 4), (4, 5))
    assert a.partner("corrupt") == [0, 1, None, 2, 3, 4] and a.partner("clean") == [0, 1, 3, 4, 5]
    assert a.spans == (((2, 3), (2, 4)),)
    # an insertion: the inserted token has no partner
    assert align_tokens([1, 2, 4, 5], [1, 2, 3, 4, 5]).pairs == ((0, 0), (1, 1), (2, 3), (3, 4))
    # two separate mentions of different lengths (a group term used twice)
    a = align_tokens([1, 7, 2, 3, 8, 4], [1, 9, 9, 2, 3, 6, 6, 4])
    assert a.pairs == ((0, 0), (1, 2), (2, 3), (3, 4), (4, 6), (5, 7))
    assert not a.identity


CLEAN_EQ, CORRUPT_EQ = ["a cat sat on it"], ["a cow sat on it"]
CLEAN, CORRUPT = "a cat sat on it", "a horse sat on it"


def _metric():
    return LogitDiff([ord("a")], [ord("e")])


@pytest.mark.parametrize("kind", ["resid_pre", "attn_out", "mlp_out", "z"])
def test_equal_length_pairs_give_exactly_todays_results(tiny_model, kind):
    m = tiny_model("llama")
    for per_position in ([False, True] if kind == "z" else [False]):
        a = patching_sweep(m, CLEAN_EQ, CORRUPT_EQ, kind, metric=_metric(), per_position=per_position)
        b = patching_sweep(m, CLEAN_EQ, CORRUPT_EQ, kind, metric=_metric(), per_position=per_position, align="spans")
        assert torch.equal(a.values, b.values) and torch.equal(a.clean_value, b.clean_value)
        assert b.alignment is None and a.str_tokens == b.str_tokens


def _expected_partners(m):
    """Corrupt position -> clean position for 'a horse sat on it' vs 'a cat sat on it', by hand.

    Characters: 'a', ' ' match; 'cat' vs 'horse' share no letter, so the span aligns from its end
    (c-r, a-s, t-e) and 'h', 'o' have no partner; ' sat on it' matches one to one."""
    off = 1 if m.tokenize("x").input_ids.shape[1] == 2 else 0  # a BOS token shifts everything by one
    clean_chars, corrupt_chars = len(CLEAN), len(CORRUPT)
    part = {}
    for i in range(off):
        part[i] = i
    part.update({off + 0: off + 0, off + 1: off + 1})                        # "a "
    part.update({off + 4: off + 2, off + 5: off + 3, off + 6: off + 4})      # r-c, s-a, e-t
    for k in range(corrupt_chars - 7):                                       # " sat on it"
        part[off + 7 + k] = off + 5 + k
    assert len(part) == off + clean_chars
    return part, off + corrupt_chars, off


def test_unequal_pair_cells_equal_hand_built_patches(tiny_model):
    m = tiny_model("llama")
    metric = _metric()
    part, T, off = _expected_partners(m)
    res = patching_sweep(m, CLEAN, CORRUPT, "resid_pre", metric=metric, align="spans")
    assert res.values.shape == (m.n_layers, T, 1)
    assert dict((b, a) for a, b in res.alignment[0].pairs) == part
    _, cc = m.run_with_cache(CLEAN, ["resid_pre.0", "resid_pre.1", "z.1"])
    rows = torch.arange(1)
    xl = m.forward(CORRUPT, logits="last")
    cl = m.forward(CLEAN, logits="last")
    metric.prepare(cl, xl)
    assert res.corrupt_value.item() == pytest.approx(metric(xl, rows).item(), abs=1e-4)
    assert res.clean_value.item() == pytest.approx(metric(cl, rows).item(), abs=1e-4)
    for L, p in [(0, off + 4), (1, off + 6), (1, off + 9), (0, T - 1)]:
        q = part[p]
        src = cc[f"resid_pre.{L}"][0, q].clone()

        def fn(x, mask, p=p, src=src):
            x = x.clone()
            x[0, p] = src.to(x.dtype)
            return x
        ref = metric(m.forward(CORRUPT, logits="last", interventions=custom(f"resid_pre.{L}", fn)), rows).item()
        assert res.values[L, p, 0].item() == pytest.approx(ref, abs=1e-4), (L, p)
    # the corrupt tokens 'h', 'o' have no partner: not patched, reported as NaN
    for p in (off + 2, off + 3):
        assert torch.isnan(res.values[:, p, 0]).all()
    df = res.to_dataframe(ci=False)
    assert (df.loc[df.pos == off + 4, "source_pos"] == off + 2).all() and (df.loc[df.pos == off + 2, "source_pos"] == -1).all()
    # a head patched at every aligned position at once
    zres = patching_sweep(m, CLEAN, CORRUPT, "z", metric=metric, align="spans", layers=[1])
    zc = cc["z.1"][0]
    for h in range(m.facts.n_heads):
        def fn(x, mask, h=h):
            x = x.clone()
            for p, q in part.items():
                x[0, p, h] = zc[q, h].to(x.dtype)
            return x
        ref = metric(m.forward(CORRUPT, logits="last", interventions=custom("z.1", fn)), rows).item()
        assert zres.values[0, h, 0].item() == pytest.approx(ref, abs=1e-4)
    assert zres.values.abs().max() > 0  # not all zero


def test_noising_direction_and_errors(tiny_model):
    m = tiny_model("gpt2")
    part, T, off = _expected_partners(m)
    inv = {q: p for p, q in part.items()}  # clean position -> corrupt position
    metric = _metric()
    res = patching_sweep(m, CLEAN, CORRUPT, "resid_post", metric=metric, direction="noise", align="spans", layers=[0])
    assert res.values.shape == (1, len(CLEAN) + off, 1)
    _, xc = m.run_with_cache(CORRUPT, ["resid_post.0"])
    cl, xl = m.forward(CLEAN, logits="last"), m.forward(CORRUPT, logits="last")
    metric.prepare(cl, xl)
    p = off + 3  # clean 'a' of 'cat' <- corrupt 's' of 'horse'
    src = xc["resid_post.0"][0, inv[p]].clone()

    def fn(x, mask):
        x = x.clone()
        x[0, p] = src.to(x.dtype)
        return x
    ref = metric(m.forward(CLEAN, logits="last", interventions=custom("resid_post.0", fn)), torch.arange(1)).item()
    assert res.values[0, p, 0].item() == pytest.approx(ref, abs=1e-4)
    assert not math.isnan(res.values[0, p, 0].item())
    with pytest.raises(PatchingError, match="not aligned"):
        patching_sweep(m, "a cat sat on it", "a horse sat on it now", "resid_pre", metric=metric, align="spans")
    with pytest.raises(PatchingError, match="from the end"):
        patching_sweep(m, CLEAN, CORRUPT, "resid_pre", metric=metric, align="spans", read_position=3)
    with pytest.raises(AlignmentError, match="different token counts"):
        patching_sweep(m, [CLEAN, "a b"], [CORRUPT, "a c"], "resid_pre", metric=metric, align="spans")
    with pytest.raises(Exception, match="same length|tokens"):
        patching_sweep(m, CLEAN, CORRUPT, "resid_pre", metric=metric)  # plain patching still refuses
