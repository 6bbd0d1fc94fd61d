"""Batched activation patching against TransformerLens's per-cell loop on the same TL bridge."""

from __future__ import annotations

from functools import partial

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp

from circuits import (
    CorruptionError,
    KLFromClean,
    LogitDiff,
    TargetProb,
    check_pair,
    embedding_noise,
    patching_sweep,
    path_patching,
    single_token_ids,
    token_replacement,
)
from workbench.interventions import replace

TOL = 1e-4

TL_SWEEPS = {
    "resid_pre": tlp.get_act_patch_resid_pre,
    "resid_mid": tlp.get_act_patch_resid_mid,
    "resid_post": partial(tlp.generic_activation_patch, patch_setter=tlp.layer_pos_patch_setter,
                          activation_name="resid_post", index_axis_names=("layer", "pos")),
    "attn_out": tlp.get_act_patch_attn_out,
    "mlp_out": tlp.get_act_patch_mlp_out,
    "z": tlp.get_act_patch_attn_head_out_all_pos,
    "head_out": tlp.get_act_patch_attn_head_out_all_pos,  # head_out = z @ W_O: the same patch
}

# byte-level tokenizer: one token per character; the pairs differ at different positions
CLEAN = ["a cat sat", "a dog ran"]
CORRUPT = ["a cow sat", "a dog run"]


def _metric():
    return LogitDiff([ord("a"), ord("b")], [ord("c"), ord("d")])


def _tl_metric(metric):
    return lambda logits: metric(logits[:, -1], torch.arange(logits.shape[0])).mean()


def _reference(model, kind, direction, clean_ids, corrupt_ids, metric, per_position=False, index_df=None):
    b = model.bridge
    base, src = (corrupt_ids, clean_ids) if direction == "denoise" else (clean_ids, corrupt_ids)
    _, cache = b.run_with_cache(src)
    if index_df is not None and kind == "resid_post":
        return tlp.generic_activation_patch(b, base, cache, _tl_metric(metric), tlp.layer_pos_patch_setter,
                                            "resid_post", index_df=index_df)
    if per_position:
        fn = tlp.get_act_patch_attn_head_out_by_pos
    else:
        fn = TL_SWEEPS[kind]
    if index_df is not None:
        name = {"z": "z", "head_out": "z"}.get(kind, kind)
        setter = {2: tlp.layer_pos_patch_setter if kind not in ("z", "head_out") else tlp.layer_head_vector_patch_setter,
                  3: tlp.layer_pos_head_vector_patch_setter}[index_df.shape[1]]
        return tlp.generic_activation_patch(b, base, cache, _tl_metric(metric), setter, name, index_df=index_df)
    return fn(b, base, cache, _tl_metric(metric))


def _sample(kind, model, T):
    """A few cells per kind, spread over layers, positions and heads."""
    N, H = model.n_layers, model.facts.n_heads
    if kind in ("z", "head_out"):
        return pd.DataFrame([(0, 1), (N - 1, H - 1), (N - 1, 0)], columns=["layer", "head"])
    return pd.DataFrame([(0, 2), (0, T - 1), (N - 1, 5), (N - 1, T - 1)], columns=["layer", "pos"])


@pytest.mark.parametrize("arch,direction", [("llama", "denoise"), ("llama", "noise"), ("gpt2", "denoise"),
                                            ("neox", "noise")])
def test_kinds_match_transformer_lens_on_sampled_cells(tiny_model, arch, direction):
    """Every kind: our full sweep, checked against TL's loop on a sample of cells (the full grids: slow test)."""
    model = tiny_model(arch, "tl")
    clean = model.tokenize(CLEAN).input_ids
    corrupt = model.tokenize(CORRUPT).input_ids
    metric = _metric()
    T = clean.shape[1]
    for kind in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "head_out"):
        if kind == "resid_mid" and arch != "llama":
            continue
        ours = patching_sweep(model, clean, corrupt, kind, metric=metric, direction=direction)
        df = _sample(kind, model, T)
        ref = _reference(model, kind, direction, clean, corrupt, metric, index_df=df)
        got = torch.stack([ours.mean[tuple(r)] for r in df.itertuples(index=False)])
        assert (got - ref.cpu()).abs().max().item() < TOL, kind
    assert ref.abs().max() > 0.05
    ours = patching_sweep(model, clean, corrupt, "z", metric=metric, direction=direction, per_position=True)
    df = pd.DataFrame([(0, 2, 1), (model.n_layers - 1, T - 1, 0)], columns=["layer", "pos", "head"])
    ref = _reference(model, "z", direction, clean, corrupt, metric, index_df=df)
    got = torch.stack([ours.mean[tuple(r)] for r in df.itertuples(index=False)])
    assert (got - ref.cpu()).abs().max().item() < TOL


@pytest.mark.slow
@pytest.mark.parametrize("arch,direction", [("llama", "denoise"), ("llama", "noise"), ("gpt2", "denoise"),
                                            ("neox", "noise")])
def test_every_kind_matches_transformer_lens(tiny_model, arch, direction):
    model = tiny_model(arch, "tl")
    clean = model.tokenize(CLEAN).input_ids
    corrupt = model.tokenize(CORRUPT).input_ids
    metric = _metric()
    for kind in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "head_out"):
        if kind == "resid_mid" and arch != "llama":
            continue  # neox has no resid_mid; GPT-2: see test_resid_mid_gpt2_against_residual_reference
        ours = patching_sweep(model, clean, corrupt, kind, metric=metric, direction=direction)
        ref = _reference(model, kind, direction, clean, corrupt, metric)
        assert ours.mean.shape == ref.shape, kind
        err = (ours.mean - ref).abs().max().item()
        assert err < TOL, f"{arch} {kind} {direction}: max |ours - TL| = {err:.2e}"
        assert ref.abs().max() > 0.05  # the comparison is not between near-zero numbers
    ours = patching_sweep(model, clean, corrupt, "head_out", metric=metric, direction=direction, per_position=True)
    ref = _reference(model, "z", direction, clean, corrupt, metric, per_position=True)
    assert (ours.mean - ref).abs().max().item() < TOL


def test_resid_mid_gpt2_against_residual_reference(tiny_model):
    """TL's bridge aliases hook_resid_mid to ln2's *input*, which on GPT-2 changes only what the MLP reads
    (the residual add bypasses it), so TL's resid_mid sweep there is an MLP-input patch. Ours patches the
    residual stream; the reference sets it through the bridge by shifting attn_out by (clean_mid - corrupt_mid)."""
    model = tiny_model("gpt2", "tl")
    b = model.bridge
    clean = model.tokenize(CLEAN).input_ids
    corrupt = model.tokenize(CORRUPT).input_ids
    metric = _metric()
    ours = patching_sweep(model, clean, corrupt, "resid_mid", metric=metric)
    _, cc = b.run_with_cache(clean)
    _, xc = b.run_with_cache(corrupt)
    for L in range(model.n_layers):
        shift = cc[f"blocks.{L}.hook_resid_mid"] - xc[f"blocks.{L}.hook_resid_mid"]
        for p in (2, 5, clean.shape[1] - 1):
            def hook(x, hook, p=p, shift=shift):
                x = x.clone()
                x[:, p] += shift[:, p]
                return x
            logits = b.run_with_hooks(corrupt, fwd_hooks=[(f"blocks.{L}.hook_attn_out", hook)])
            ref = _tl_metric(metric)(logits).item()
            assert abs(ours.mean[L, p].item() - ref) < TOL


@pytest.mark.drift
@pytest.mark.smollm
def test_matches_transformer_lens_on_smollm_sample(smollm):
    """SmolLM2 (the default real model) on an IOI pair: a sample of cells of every kind vs TL's loop."""
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupt = "When Mary and John went to the store, Mary gave a drink to"
    ct, xt = check_pair(smollm, clean, corrupt)
    metric = LogitDiff(single_token_ids(smollm, " Mary"), single_token_ids(smollm, " John"))
    T = ct.shape[1]
    layers, positions = [0, 13, 29], [0, 9, T - 1]
    for kind in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
        ours = patching_sweep(smollm, ct, xt, kind, metric=metric, layers=layers, positions=positions)
        df = pd.DataFrame([(L, p) for L in layers for p in positions], columns=["layer", "pos"])
        ref = _reference(smollm, kind, "denoise", ct.input_ids, xt.input_ids, metric, index_df=df)
        err = (ours.mean.reshape(-1) - ref.cpu()).abs().max().item()
        assert err < TOL, f"{kind}: {err:.2e}"
    heads = [0, 4, 8]
    ours = patching_sweep(smollm, ct, xt, "z", metric=metric, layers=layers, heads=heads)
    df = pd.DataFrame([(L, h) for L in layers for h in heads], columns=["layer", "head"])
    ref = _reference(smollm, "z", "denoise", ct.input_ids, xt.input_ids, metric, index_df=df)
    assert (ours.mean.reshape(-1) - ref).abs().max().item() < TOL
    assert abs(ours.clean_value.item() - ours.corrupt_value.item()) > 1.0  # the pair really flips the answer


def test_invariants_and_result(tiny_model):
    model = tiny_model("llama", "tl")
    metric = _metric()
    res = patching_sweep(model, CLEAN, CORRUPT, "resid_post", metric=metric)
    N, T = model.n_layers, res.shape[1]
    # the final residual at the read position *is* the clean run's: full recovery, exactly
    assert res.normalized[N - 1, T - 1].item() == pytest.approx(1.0, abs=1e-5)
    # the final residual elsewhere cannot reach the read logits: exactly the corrupt value
    assert torch.equal(res.values[N - 1, 0], res.corrupt_value)
    # positions where clean and corrupt agree in every prompt (0, 1: "a "): patching changes nothing, exactly
    assert torch.equal(res.values[0, 0], res.corrupt_value) and torch.equal(res.values[0, 1], res.corrupt_value)
    df = res.to_dataframe()
    assert {"layer", "pos", "mean", "normalized", "ci_low", "ci_high", "n_prompts"} <= set(df.columns)
    assert len(df) == N * T and (df["ci_low"] <= df["normalized"] + 1e-9).all()
    assert res.provenance.model_hash == model.weights_hash and res.provenance.data_hash
    top = res.top(3)
    assert len(top) == 3 and abs(top[0][1]) >= 1.0 - 1e-5


def test_metrics_prob_and_kl_against_full_forward(tiny_model):
    """Probability and KL metrics: a few cells recomputed with an ordinary patched forward (HookedModel.forward)."""
    model = tiny_model("gpt2", "nnsight")  # the fast path is backend-independent; check the other backend too
    ct, xt = check_pair(model, CLEAN, CORRUPT)
    for metric in (TargetProb([ord("a"), ord("b")]), KLFromClean()):
        res = patching_sweep(model, ct, xt, "attn_out", metric=metric)
        _, cache = model.run_with_cache(ct, ["attn_out.0", "attn_out.1"])
        clean_last = model.forward(ct, logits="last")
        metric.prepare(clean_last, None)
        for L, p in [(0, 3), (1, 7), (1, ct.shape[1] - 1)]:
            iv = replace(f"attn_out.{L}", cache[f"attn_out.{L}"], positions=[p])
            logits = model.forward(xt, interventions=iv, logits="last")
            ref = metric(logits, torch.arange(2))
            assert torch.allclose(res.values[L, p], ref.cpu(), atol=TOL), (metric.name, L, p)


def test_noise_corruption(tiny_model):
    model = tiny_model("llama", "tl")
    ct = model.tokenize(CLEAN)
    noise = embedding_noise(model, ct, positions=[2, 3], std_multiple=3.0, seed=1)
    metric = _metric()
    res = patching_sweep(model, ct, noise, "resid_pre", metric=metric)
    # the corrupt baseline is the noised forward
    noised = model.forward(ct, interventions=noise.intervention, logits="last")
    assert torch.allclose(res.corrupt_value, metric(noised, torch.arange(2)).cpu(), atol=TOL)
    # one cell by hand: noise at the embeddings, clean resid_pre.1 patched in at position 3
    _, cache = model.run_with_cache(ct, ["resid_pre.1"])
    iv = replace("resid_pre.1", cache["resid_pre.1"], positions=[3])
    logits = model.forward(ct, interventions=[noise.intervention, iv], logits="last")
    assert torch.allclose(res.values[1, 3], metric(logits, torch.arange(2)).cpu(), atol=TOL)
    # noise only at positions 2, 3: patching resid_pre.0 elsewhere changes nothing
    assert res.values[0, 0].tolist() == res.corrupt_value.tolist()
    assert noise.noise[:, [0, 1, 4]].abs().sum() == 0 and noise.sigma > 0


def test_clear_errors(tiny_model):
    model = tiny_model("llama", "tl")
    with pytest.raises(CorruptionError, match="same length"):
        patching_sweep(model, "a cat sat", "a cats sat", metric=_metric())
    with pytest.raises(CorruptionError, match="padded"):
        patching_sweep(model, ["ab", "abc"], ["cd", "cde"], metric=_metric())
    with pytest.raises(CorruptionError, match="2 clean prompts but 1"):
        patching_sweep(model, ["ab", "cd"], ["ab"], metric=_metric())
    with pytest.raises(CorruptionError, match="does not occur"):
        token_replacement(model, "a cat sat", {"dog": "cow"})
    clean, corrupt = token_replacement(model, "a cat sat", {"cat": "cow"})
    assert clean.shape == corrupt.shape
    with pytest.raises(ValueError, match="site_kind"):
        patching_sweep(model, clean, corrupt, "pattern", metric=_metric())


def test_chunking_does_not_change_results(tiny_model):
    model = tiny_model("neox", "tl")
    metric = _metric()
    a = patching_sweep(model, CLEAN, CORRUPT, "z", metric=metric, per_position=True)
    b = patching_sweep(model, CLEAN, CORRUPT, "z", metric=metric, per_position=True, max_cells_per_forward=1)
    assert torch.allclose(a.values, b.values, atol=1e-5)


@pytest.mark.parametrize("component", ["q", pytest.param("k", marks=pytest.mark.slow), "v"])
def test_direct_path_matches_transformer_lens(tiny_model, component):
    model = tiny_model("gpt2", "tl")  # TL supports k/v direct paths only without grouped-query attention
    b = model.bridge
    clean = model.tokenize(CLEAN).input_ids
    corrupt = model.tokenize(CORRUPT).input_ids
    metric = _metric()
    _, cc = b.run_with_cache(clean)
    _, xc = b.run_with_cache(corrupt)
    ref = tlp.get_act_patch_direct_path(b, corrupt, cc, xc, _tl_metric(metric), src_layer=0, src_head=1,
                                        component=component, verbose=False)
    ours = path_patching(model, clean, corrupt, (0, 1), metric=metric, component=component)
    assert (ours.to_heads.mean(-1)[1] - ref[1].cpu()).abs().max().item() < TOL
    assert torch.isnan(ours.to_heads[0]).all()
    df = ours.to_dataframe()
    assert "logits" in set(df["dst"]) and len(df) == model.facts.n_heads + 1
