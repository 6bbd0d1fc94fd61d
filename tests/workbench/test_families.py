"""Every named model family, as a tiny random model built from transformers' own config class and saved to a
directory: both backends against plain transformers, against each other at every site, cached generation
against the uncached loop, and the patching engine against full forwards with the same patch.

Sequences are longer than the tiny Gemma models' 8-token sliding window, so local-attention masks are
exercised. ``tests/workbench/test_families.py::test_bf16`` repeats the checks at bf16 tolerances.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from circuits import LogitDiff, patching_sweep
from workbench.interventions import replace
from workbench.sites import Site, SiteError

FAMILIES = ["gpt2", "llama", "neox", "mistral", "qwen2", "gemma", "gemma2", "gemma3", "gemma3-mm", "qwen3",
            "qwen3-moe", "phi3", "olmo2", "mixtral", "gptj", "falcon",
            "granite", "granitemoe", "gpt-oss", "afmoe", "nanochat"]
IDS = torch.tensor([[256] + [40 + (7 * i) % 90 for i in range(23)],
                    [256] + [60 + (5 * i) % 80 for i in range(23)]])  # [2, 24]
TOL = 1e-4


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> float:
    """max |a - b| relative to the scale of b (at least 1)."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


@pytest.fixture(scope="module")
def hf_reference():
    cache = {}

    def get(model):
        if model.source not in cache:
            cache[model.source] = AutoModelForCausalLM.from_pretrained(model.source, attn_implementation="eager").eval()
        return cache[model.source]
    return get


@pytest.mark.drift
@pytest.mark.parametrize("fam", FAMILIES)
def test_logits_and_every_site_agree(tiny_model, hf_reference, fam):
    tl, nn = tiny_model(fam, "tl"), tiny_model(fam, "nnsight")
    with torch.no_grad():
        ref = hf_reference(tl)(IDS).logits
    for m in (tl, nn):
        assert _close(m.forward(IDS), ref, TOL) < TOL, (fam, m.backend_name)
    sites = tl.all_sites()
    assert sites == nn.all_sites()
    _, a = tl.run_with_cache(IDS, sites)
    _, b = nn.run_with_cache(IDS, sites)
    for s in sites:
        assert _close(a[s], b[s], TOL) < TOL, (fam, s.name)
    # what attn_out and mlp_out mean on every family: what is added to the residual stream
    for L in range(tl.n_layers):
        pre, post = b[Site("resid_pre", L)], b[Site("resid_post", L)]
        attn, mlp = b[Site("attn_out", L)], b[Site("mlp_out", L)]
        if tl.facts.parallel_attn_mlp:
            assert _close(pre + attn + mlp, post, 1e-5) < 1e-5, (fam, L)
        else:
            mid = b[Site("resid_mid", L)]
            assert _close(pre + attn, mid, 1e-5) < 1e-5 and _close(mid + mlp, post, 1e-5) < 1e-5, (fam, L)
    if tl.arch.is_moe:  # the router is readable on every routed layer: its top-k choice per token
        moe = [L for L in range(tl.n_layers) if tl.arch.has_router(L)]
        assert moe and [s.layer for s in sites if s.kind == "router"] == moe
        for L in moe:
            r = b[Site("router", L)]
            assert r.shape == (*IDS.shape, tl.facts.n_experts)
            assert r.topk(tl.facts.experts_per_token, dim=-1).indices.unique().numel() > 1
            # the logits of the router's own weights (the linear map of the MLP's input)
            lin = tl.layer_module(L, "router")
            lin = getattr(lin, "gate", lin)  # AFMoE's router keeps its Linear inside
            w, bias = getattr(lin, "weight", None), getattr(lin, "bias", None)
            assert w is not None and w.shape == (tl.facts.n_experts, tl.facts.d_model), (fam, L)
            ln2 = nn.layer_module(L, "ln2")
            x = ln2(b[Site("resid_mid", L)]) if ln2 is not None else b[Site("resid_mid", L)]
            assert _close(r, torch.nn.functional.linear(x, w, bias), 1e-4) < 1e-4, (fam, L)
        for L in set(range(tl.n_layers)) - set(moe):  # dense layers have none, and say so
            with pytest.raises(SiteError, match="dense MLP"):
                nn.run_with_cache(IDS, [Site("router", L)])


def _greedy_uncached(model, ids, n):
    ids = ids.tolist()
    out = []
    for _ in range(n):
        nxt = int(model.forward(torch.tensor([ids]))[0, -1].argmax())
        out.append(nxt)
        ids.append(nxt)
    return out


@pytest.mark.drift
@pytest.mark.parametrize("fam", FAMILIES)
def test_cached_generation_equals_uncached_and_transformers(tiny_model, hf_reference, fam):
    prompt = IDS[0, :12]  # 12 prompt + 10 new tokens: decoding crosses the 8-token sliding window
    hf = hf_reference(tiny_model(fam, "tl"))
    ref = hf.generate(prompt[None], attention_mask=torch.ones(1, 12, dtype=torch.long), max_new_tokens=10,
                      do_sample=False, eos_token_id=None, pad_token_id=0)[0, 12:].tolist()
    for backend in ("tl", "nnsight"):
        m = tiny_model(fam, backend)
        got = m.generate(m.tokenize(prompt), max_new_tokens=10, stop_at_eos=False).completion_ids[0]
        assert got == _greedy_uncached(m, prompt, 10) == ref, (fam, backend)


@pytest.mark.parametrize("fam", FAMILIES)
def test_patching_engine_equals_full_forwards(tiny_model, fam):
    """The batched engine (partial forwards from cached residuals and KV prefixes) against a full forward of the
    corrupt prompt with the clean activation written at the same site and position."""
    m = tiny_model(fam, "nnsight")
    clean, corrupt = IDS[:1], IDS[1:]
    metric = LogitDiff([ord("a")], [ord("b")])
    _, cc = m.run_with_cache(clean, m.all_sites(["resid_pre", "attn_out", "mlp_out", "z"]))
    base = float(metric(m.forward(corrupt)[:, -1], torch.arange(1)))
    for kind in ("resid_pre", "attn_out", "mlp_out"):
        cells = [(0, 3), (m.n_layers - 1, 20), (m.n_layers - 1, 23)]
        layers, positions = sorted({c[0] for c in cells}), sorted({c[1] for c in cells})
        res = patching_sweep(m, clean, corrupt, kind, metric=metric, layers=layers, positions=positions)
        for L, p in cells:
            iv = replace(f"{kind}.{L}", cc[f"{kind}.{L}"], positions=[p])
            want = float(metric(m.forward(corrupt, interventions=iv)[:, -1], torch.arange(1)))
            got = float(res.mean[layers.index(L), positions.index(p)])
            assert abs(got - want) < TOL * max(1.0, abs(want)), (fam, kind, L, p, got, want)
    # a patch that changes something (the comparison is not between equal numbers)
    iv = replace("resid_pre.0", cc["resid_pre.0"], positions=[23])
    assert abs(float(metric(m.forward(corrupt, interventions=iv)[:, -1], torch.arange(1))) - base) > 1e-4


@pytest.mark.parametrize("fam", ["llama", "gemma2", "qwen3-moe", "gpt2", "phi3"])
def test_bf16(tiny_model, fam, tmp_path):
    """bf16 loads: logits against transformers in bf16, the backends against each other, cached generation,
    and the self-check, at bf16 tolerances."""
    from workbench.models import load

    src = tiny_model(fam, "nnsight").source
    hf = AutoModelForCausalLM.from_pretrained(src, attn_implementation="eager", dtype=torch.bfloat16).eval()
    with torch.no_grad():
        ref = hf(IDS).logits
    tl = load(src, backend="tl", dtype="bfloat16", device="cpu")
    # eager like the reference: in bf16 the kernels' rounding differs, which can flip a near-tied MoE routing
    nn = load(src, backend="nnsight", dtype="bfloat16", device="cpu", attn_implementation="eager")
    assert tl.dtype == nn.dtype == torch.bfloat16
    for m in (tl, nn):
        assert _close(m.forward(IDS), ref, 2e-2) < 2e-2, (fam, m.backend_name)
    sites = [s for s in nn.all_sites(["resid_post", "attn_out", "mlp_out"])]
    _, a = tl.run_with_cache(IDS, sites)
    _, b = nn.run_with_cache(IDS, sites)
    for s in sites:
        assert _close(a[s], b[s], 2e-2) < 2e-2, (fam, s.name)
    prompt = IDS[0, :12]
    assert nn.generate(nn.tokenize(prompt), max_new_tokens=6, stop_at_eos=False).completion_ids[0] == \
        hf.generate(prompt[None], attention_mask=torch.ones(1, 12, dtype=torch.long), max_new_tokens=6,
                    do_sample=False, eos_token_id=None, pad_token_id=0)[0, 12:].tolist()


@pytest.mark.parametrize("fam", ["llama", "gpt2", "neox", "qwen3-moe", "gemma3", "gptj"])
def test_sdpa_by_default_equals_eager_and_patterns_run_eager(tiny_model, fam):
    """Where the installed transformers supports SDPA for the family (all of these on the locked version); where it
    does not (GPT-J on transformers 5.17, seen on the GPU machine) the model stays eager and says so."""
    from workbench.models import load

    sd = tiny_model(fam, "nnsight")
    eager = load(sd.source, backend="nnsight", device=str(sd.device), attn_implementation="eager")
    want = "sdpa" if getattr(type(sd.hf_model), "_supports_sdpa", False) else "eager"
    assert sd.attn_implementation == want and eager.attn_implementation == "eager"
    assert sd.provenance().extra["attn_implementation"] == want
    assert _close(sd.forward(IDS), eager.forward(IDS), 1e-5) < 1e-5
    _, a = sd.run_with_cache(IDS, ["pattern.0", "z.0"])  # a run that reads patterns runs eager, then switches back
    _, b = eager.run_with_cache(IDS, ["pattern.0", "z.0"])
    assert torch.equal(a["pattern.0"], b["pattern.0"]) and _close(a["z.0"], b["z.0"], 1e-5) < 1e-5
    assert sd.hf_model.config._attn_implementation == want
    assert tiny_model(fam, "tl").attn_implementation == "transformer_lens"


def _mamba_gguf(path):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "mamba")
    w.add_block_count(2)
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_tensor("token_embd.weight", np.zeros((10, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unsupported_models_are_refused_from_their_config(tiny_model, tmp_path, capsys):
    """Before any weights are read: a GGUF from its metadata (no dequantising), a directory from config.json
    (its weights file here is garbage, so reading it would fail differently)."""
    from transformers import AutoConfig

    from experiments.cli import main
    from workbench.models import load
    from workbench.models.arch import UnsupportedArchitecture

    gg = _mamba_gguf(tmp_path / "mamba.gguf")
    with pytest.raises(UnsupportedArchitecture, match="mamba"):
        load(gg, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "models").glob("gguf-*"))  # nothing was dequantised
    d = tmp_path / "mamba-dir"
    AutoConfig.for_model("mamba", vocab_size=300, hidden_size=32, num_hidden_layers=2).save_pretrained(d)
    (d / "model.safetensors").write_bytes(b"not weights")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).write_bytes((__import__("pathlib").Path(tiny_model("llama", "nnsight").source) / f).read_bytes())
    with pytest.raises(UnsupportedArchitecture, match="not a decoder-only transformer"):
        load(d)
    assert main(["models", "--check", str(gg)]) == 1
    out = capsys.readouterr().out
    assert "NOT supported" in out and "mamba" in out
    assert main(["models", "--check", tiny_model("gemma2", "nnsight").source]) == 0
    out = capsys.readouterr().out
    assert "supported" in out and "sliding-window" in out and "soft-capping" in out


@pytest.mark.parametrize("fam", ["llama", "gpt2", "neox", "gemma2", "qwen3-moe", "olmo2"])
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_residual_collection_fast_path_equals_the_backend(tiny_model, fam, backend):
    """run_with_cache of residual sites with logits=None runs the raw stack (no tracing, no unembedding, no layers
    after the last one asked for); the numbers are the backend's."""
    m = tiny_model(fam, backend)
    toks = m.tokenize(["a short one", "and a rather longer prompt of many more bytes"])  # left padding
    sites = ["resid_pre.0", f"resid_post.{m.n_layers - 2}", "resid_post.0"]
    _, fast = m.run_with_cache(toks, sites, logits=None)
    logits, ref = m.run_with_cache(toks, sites, logits="all")  # the backend path
    real = toks.attention_mask.bool()
    for s in sites:
        assert (fast[s] - ref[s])[real].abs().max().item() < 1e-5, s
    _, last = m.run_with_cache(toks, sites, logits=None, positions="last", dtype=torch.float16)
    assert last["resid_post.0"].dtype == torch.float16 and last["resid_post.0"].shape == (2, m.facts.d_model)


@pytest.mark.parametrize("fam", ["gemma2", "qwen3-moe", "olmo2", "phi3", "gptj", "granite"])
def test_every_method_runs_on_quirky_families(tiny_model, fam, tmp_path):
    """Lens (raw and folded, with soft-capping), tuned lens, head detectors, probes, steering and its fast path
    on families whose quirks the methods must respect, each checked against a reference."""
    from circuits import head_scores, logit_lens
    from circuits.tuned_lens import compare_lenses, train_tuned_lens
    from probe.sweep import layer_sweep
    from steering import Add, contrastive_vectors, steer
    from steering.fastpath import ResidualReplay
    from workbench.store import collect_activations

    m = tiny_model(fam, "nnsight")
    texts = ["the cat sat on the mat", "a dog ran in the park today", "abc def ghi", "hello there world"]
    # the logit lens at the last stage is the model's own output (soft-capped where the family caps):
    # KL to the final distribution 0 and top-1 agreement 1, in raw and folded coordinates
    for coords in ("raw", "folded"):
        lens = logit_lens(m, texts[:2], k=3, coordinates=coords)
        real = lens.mask.bool()
        assert lens.kl[-1][real].abs().max() < 1e-4, coords
        assert bool((lens.top1_agree[-1][real] == 1).all()), coords
        assert lens.kl[0][real].mean() > 1e-3  # the embedding stage is not the output
    training = train_tuned_lens(m, texts * 4, steps=5, batch_tokens=32, seed=0)
    comp = compare_lenses(m, training.lens, texts, seed=0, n_resamples=50)
    assert abs(comp.kl_logit[-1].value) < 1e-4 and len(comp.stages) == m.n_layers + 1
    # head detectors on repeated random tokens: every head scored, in [0, 1]
    ind = head_scores(m, n_seqs=2, half=6).get("induction", "target")
    assert ind.shape == (m.n_layers, m.facts.n_heads) and bool(((ind >= 0) & (ind <= 1 + 1e-6)).all())
    # probes on activations collected through the store (the residual fast path): a planted word is found
    prompts = [f"{w} {i}" for i in range(20) for w in ("apple", "stone")]
    labels = [w == "apple" for i in range(20) for w in ("apple", "stone")]
    store = collect_activations(m, prompts, [f"resid_post.{L}" for L in range(m.n_layers)], tmp_path / "store",
                                positions="last", progress=False)
    sw = layer_sweep(store, labels, C=1.0, controls=False, seed=0, n_resamples=50)
    auroc = sw.estimates(metric="auroc")
    assert max(e.value for e in auroc) > 0.9, [e.value for e in auroc]
    # steering: the same added vector through the hooked forward and through the fast path's partial forwards
    L = m.n_layers - 1
    vec = contrastive_vectors(m, ["happy joy"], ["sad grief"], [L - 1], chat=False)
    d = vec.vectors[next(iter(vec.vectors))].float()
    with steer(m, Add(f"resid_post.{L - 1}", d, 4.0, positions="all")):
        full = torch.stack([m.forward(t, logits="last")[0] for t in texts[:2]]).float().cpu()
    rp = ResidualReplay(m, texts[:2], f"resid_post.{L - 1}", positions="all", batch_size=2, chat=False)
    base = torch.stack([m.forward(t, logits="last")[0] for t in texts[:2]]).float().cpu()
    assert (rp.last_logits().cpu() - base).abs().max() < 1e-4
    assert (rp.last_logits(4.0 * d).cpu() - full).abs().max() < 1e-4
    assert (full - base).abs().max() > 1e-3


def test_softcapped_attention_stays_eager(tiny_model):
    """Gemma 2 soft-caps attention logits, which the fused kernels do not: "auto" keeps it eager (a transformers
    release that accepted SDPA for it gave logits 1e-2 off on CUDA)."""
    m = tiny_model("gemma2", "nnsight")
    assert m.hf_config.attn_logit_softcapping and m.attn_implementation == "eager"
    assert tiny_model("llama", "nnsight").attn_implementation == "sdpa"


@pytest.mark.parametrize("model_type, reason", [("bloom", "ALiBi"), ("mpt", "ALiBi"), ("opt", "MLP inline"),
                                                ("xglm", "MLP inline"), ("modernbert-decoder", "prediction head"),
                                                ("openai-gpt", "no final norm"), ("deepseek_v3", "latent attention")])
def test_unsupported_families_are_refused_with_their_reason(model_type, reason):
    """From the config alone (no weights): the reason a family cannot be studied, not a confusing later error."""
    from transformers import AutoConfig

    from workbench.models.arch import UnsupportedArchitecture, arch_for_config, support_report

    config = AutoConfig.for_model(model_type)
    with pytest.raises(UnsupportedArchitecture, match=reason):
        arch_for_config(config)
    assert support_report(config)["supported"] is False


@pytest.mark.parametrize("layout", [dict(), dict(new_decoder_architecture=True, num_kv_heads=2)])
def test_falcon_fused_qkv_layouts_give_the_attention_the_model_computes(tmp_path, layout):
    """Falcon's fused q/k/v layout depends on its config (multi-query [q|k|v]; per KV group [q..q|k|v] in the
    new decoder architecture, which TransformerLens 4.3 cannot split): the canonical q, k, v recompute the model's
    own attention pattern (rotary, causal softmax) and its z = pattern @ v, per head and KV group."""
    import math

    from transformers import FalconConfig

    from workbench.models import load
    from workbench.models.compat import apply_rotary
    from workbench.models.tiny import build_tiny_tokenizer

    cfg = FalconConfig(vocab_size=260, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, bias=False,
                       max_position_embeddings=256, bos_token_id=256, eos_token_id=256, pad_token_id=259,
                       initializer_range=0.1, hidden_dropout=0.0, attention_dropout=0.0, **layout)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    build_tiny_tokenizer(tmp_path)
    m = load(str(tmp_path), backend="nnsight", device="cpu", attn_implementation="eager")
    ids = IDS[:1, :12]
    _, c = m.run_with_cache(ids, ["q.0", "k.0", "v.0", "pattern.0", "z.0", "resid_pre.0"])
    q, k, v = c["q.0"], c["k.0"], c["v.0"]
    n_kv = 2 if layout else 1
    assert q.shape[2] == 4 and k.shape[2] == v.shape[2] == n_kv == m.facts.n_kv_heads
    pos = torch.arange(ids.shape[1])[None]
    cos, sin = m.rotary_embeddings(c["resid_pre.0"], pos, layer=0)
    qr, kr = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    kr, v = kr.repeat_interleave(4 // n_kv, dim=2), v.repeat_interleave(4 // n_kv, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", qr, kr) / math.sqrt(16)
    scores = scores.masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), float("-inf"))
    assert _close(scores.softmax(-1), c["pattern.0"], 1e-5) < 1e-5
    assert _close(torch.einsum("bhqk,bkhd->bqhd", c["pattern.0"], v), c["z.0"], 1e-5) < 1e-5
