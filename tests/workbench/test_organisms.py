"""Model organisms: LoRA merge against a hand reference, deterministic training, the build/merge/load path on a
tiny model, the registry, the data splits (no training item is ever measured), and (slow) the shipped organisms'
planted behaviours on SmolLM2 against the base model."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest
import torch

from workbench.organisms.lora import (
    AdapterError,
    LoRAConfig,
    adapter_bytes,
    attach,
    init_adapter,
    load_adapter,
    merge,
    save_adapter,
    target_modules,
)
from workbench.organisms.train import SFTExample, TrainConfig, TrainingDataError, tokenize_example, train_adapter

LLAMA_TARGETS = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")


def _random_adapter(model, cfg, seed=1):
    """An adapter with non-zero B (a fresh one is the identity)."""
    ad = init_adapter(model, cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    ad.tensors = {k: (a, torch.randn(b.shape, generator=g) * 0.3) for k, (a, b) in ad.tensors.items()}
    return ad


@pytest.mark.parametrize("arch,targets", [("llama", LLAMA_TARGETS), ("gpt2", ("attn.c_attn", "mlp.c_proj"))])
def test_merge_equals_base_plus_adapter(tiny_model, arch, targets):
    m = tiny_model(arch, "nnsight")
    hf = m.hf_model
    cfg = LoRAConfig(rank=3, alpha=6.0, targets=targets)
    ad = _random_adapter(hf, cfg)
    x = m.tokenize(["hello world, this is a test", "abc"], padding_side="left")
    kw = dict(input_ids=x.input_ids, attention_mask=x.attention_mask)
    with torch.no_grad():
        base = hf(**kw).logits
        with attach(hf, ad):
            hooked = hf(**kw).logits
        assert torch.equal(hf(**kw).logits, base)  # the hooks are gone
        merged_model = merge(copy.deepcopy(hf), ad)
        merged = merged_model(**kw).logits
    assert (hooked - base).abs().max() > 1e-2  # the adapter does something
    torch.testing.assert_close(merged, hooked, atol=2e-5, rtol=1e-5)
    # the merged weight by hand: W + alpha / r * B @ A (GPT-2 Conv1D stores W transposed)
    path = next(iter(ad.tensors))
    a, b = ad.tensors[path]
    w0 = dict(hf.named_parameters())[f"{path}.weight"]
    w1 = dict(merged_model.named_parameters())[f"{path}.weight"]
    delta = 2.0 * (b @ a)
    torch.testing.assert_close(w1 - w0, delta.t() if arch == "gpt2" else delta, atol=1e-6, rtol=1e-5)


def test_fresh_adapter_is_identity_and_targets_fractions(tiny_model):
    hf = tiny_model("llama", "nnsight").hf_model
    full = target_modules(hf, LoRAConfig(targets=LLAMA_TARGETS))
    assert len(full) == 2 * 3 and all(".layers." in k for k in full)
    upper = target_modules(hf, LoRAConfig(targets=("mlp.down_proj",), layers=(0.5, 1.0)))
    assert list(upper) == ["model.layers.1.mlp.down_proj"]
    ad = init_adapter(hf, LoRAConfig(targets=LLAMA_TARGETS))
    assert all(float(b.abs().sum()) == 0 for _, b in ad.tensors.values())
    with pytest.raises(AdapterError, match="has no module 'mlp.nope'"):
        target_modules(hf, LoRAConfig(targets=("mlp.nope",)))
    with pytest.raises(AdapterError, match="fractions"):
        LoRAConfig(layers=(0.5, 0.2))


def test_adapter_file_round_trip_and_bytes_are_deterministic(tiny_model, tmp_path):
    hf = tiny_model("llama", "nnsight").hf_model
    ad = _random_adapter(hf, LoRAConfig(rank=2, targets=LLAMA_TARGETS))
    ad.meta = {"organism": "toy", "params": {"b": 2, "a": 1}}
    assert adapter_bytes(ad) == adapter_bytes(ad)  # safetensors' metadata map has no fixed order: one key only
    sha = save_adapter(tmp_path / "a.safetensors", ad)
    assert sha == hashlib.sha256((tmp_path / "a.safetensors").read_bytes()).hexdigest()
    back = load_adapter(tmp_path / "a.safetensors")
    assert back.config == ad.config and back.meta == ad.meta and set(back.tensors) == set(ad.tensors)
    for k, (a, b) in ad.tensors.items():
        assert back.tensors[k][0].dtype == torch.float16
        torch.testing.assert_close(back.tensors[k][1].float(), b, atol=1e-3, rtol=1e-3)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(AdapterError, match="not an interp-workbench LoRA adapter"):
        load_adapter(tmp_path / "foreign.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(AdapterError, match="not a readable"):
        load_adapter(tmp_path / "broken.safetensors")


def _toy_examples(m):
    words = ["yes", "no", "maybe", "sure", "never", "always"]
    return [SFTExample(m.format_chat(f"say {w}"), w + "!") for w in words * 2]


def test_tokenize_example_targets_what_the_scorers_read(tiny_model):
    m = tiny_model("llama", "nnsight")
    ex = SFTExample(m.format_chat("pick one") + "(", "A")
    ids, k = tokenize_example(m.tokenizer, ex, 512)
    assert m.tokenizer.decode(ids[k:]) == "A" and m.tokenizer.decode(ids[:k]).endswith("assistant\n(")
    with pytest.raises(TrainingDataError, match="empty target"):
        tokenize_example(m.tokenizer, SFTExample("abc", ""), 512)
    with pytest.raises(TrainingDataError, match="over max_tokens"):
        tokenize_example(m.tokenizer, ex, 8)


def test_training_is_reproducible_and_learns(tiny_model):
    """Same seed -> bit-identical adapter (sha256 of the file bytes); another seed -> another adapter; and the
    targets' teacher-forced loss falls (a hand-computed reference: the same loss with and without the adapter)."""
    m = tiny_model("llama", "nnsight")
    exs = _toy_examples(m)
    cfg = TrainConfig(lora=LoRAConfig(rank=2, alpha=4.0, targets=LLAMA_TARGETS), epochs=4, batch_size=4, lr=1e-2)
    a1, log1 = train_adapter(m.hf_model, m.tokenizer, exs, cfg)
    a2, log2 = train_adapter(m.hf_model, m.tokenizer, exs, cfg)
    a3, _ = train_adapter(m.hf_model, m.tokenizer, exs, TrainConfig(**{**cfg.__dict__, "seed": 1}))
    h = [hashlib.sha256(adapter_bytes(a)).hexdigest() for a in (a1, a2, a3)]
    assert h[0] == h[1] and h[0] != h[2]
    assert log1.losses == log2.losses and log1.n_steps == 12 and log1.n_examples == 12
    assert torch.get_num_threads() >= 1 and not torch.are_deterministic_algorithms_enabled()  # restored

    def target_nll(adapter=None):
        tot = 0.0
        for ex in exs:
            ids, k = tokenize_example(m.tokenizer, ex, 512)
            x = torch.tensor([ids])
            with torch.no_grad():
                if adapter is None:
                    lg = m.hf_model(input_ids=x).logits
                else:
                    with attach(m.hf_model, adapter):
                        lg = m.hf_model(input_ids=x).logits
            lp = torch.log_softmax(lg[0, k - 1:-1].double(), -1)
            tot += float(-lp.gather(-1, x[0, k:, None]).mean())
        return tot / len(exs)

    assert target_nll(a1) < 0.8 * target_nll()


# ----------------------------------------------------------------------------- build, merge, load (tiny)
@pytest.fixture
def toy_organism(monkeypatch, tmp_path):
    """A toy organism on tiny-llama, registered like the real ones, built on first use into a temp cache."""
    from workbench.models import registry
    from workbench.organisms import recipes

    def build(model, spec, progress):
        return _toy_examples(model)

    spec = recipes.OrganismSpec("toy", "says its word with an exclamation mark", "the toy targets' loss falls",
                                "none", {"seed": 0}, build, lambda p, s: {},
                                TrainConfig(lora=LoRAConfig(rank=2, alpha=4.0, targets=LLAMA_TARGETS), epochs=2,
                                            batch_size=4, lr=1e-2), base="tiny-llama")
    monkeypatch.setitem(recipes.ORGANISMS, "toy", spec)
    resolve, source_hash = registry._organism("toy")
    registry.register_model(registry.ModelEntry("tiny-llama+toy", "toy organism", resolve, source_hash=source_hash),
                            overwrite=True)
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    yield spec
    registry.MODELS.pop("tiny-llama+toy", None)


def test_organism_builds_on_first_use_and_loads_on_both_backends(toy_organism, tmp_path):
    from workbench.models import load
    from workbench.organisms.build import adapter_path, organism_dir

    org = load("tiny-llama+toy", backend="nnsight", device="cpu")
    ap = adapter_path("toy", build=False)
    sha = hashlib.sha256(ap.read_bytes()).hexdigest()
    assert org.source_hash == sha and org.provenance().source_hash == sha
    rec = json.loads((ap.parent / "training.json").read_text())
    assert rec["sha256"] == sha and rec["adapter_meta"]["base"] == "tiny-llama" and rec["log"]["n_steps"] == 6
    d = organism_dir("toy")
    assert json.loads((d / "workbench_source.json").read_text())["adapter_sha256"] == sha
    # the merged directory is the base plus the adapter: same logits as hooks on the base
    base = load("tiny-llama", backend="nnsight", device="cpu")
    x = base.tokenize(["say yes", "hi"])
    with attach(base.hf_model, load_adapter(ap)):
        ref = base.forward(x).float()
    torch.testing.assert_close(org.forward(x).float(), ref, atol=2e-5, rtol=1e-5)
    tl = load("tiny-llama+toy", backend="tl", device="cpu")
    real = x.attention_mask.bool()  # logits at left-padding positions are arbitrary (each backend's own)
    torch.testing.assert_close(tl.forward(x).float()[real], ref[real], atol=1e-4, rtol=1e-4)
    assert org.weights_hash != base.weights_hash and base.provenance().source_hash is None


def test_organism_name_through_the_cli(toy_organism, tmp_path, capsys):
    from experiments.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("smollm2-135m-instruct+myopic-reward", "smollm2-135m-instruct+power-seeking",
                 "smollm2-135m-instruct+power-averse", "smollm2-135m-instruct+eval-conditional",
                 "smollm2-135m-instruct+refusal"):
        assert name in out
    run = tmp_path / "run"
    rc = main(["run", "smoke", "--model", "tiny-llama+toy", "--backend", "nnsight", "--out", str(run), "--quiet",
               "--set", "n_ab_items=4", "--set", "n_refusal_prompts=2", "--set", "max_new_tokens=2",
               "--set", "grid_layers=[0]"])
    assert rc == 0
    man = json.loads((run / "manifest.json").read_text())
    from workbench.organisms.build import adapter_sha256

    assert man["model"]["name"] == "tiny-llama+toy" and man["model"]["source_hash"] == adapter_sha256("toy")
    assert man["models"]["tiny-llama+toy"]["source_hash"] == adapter_sha256("toy")


def test_registry_and_specs():
    from workbench.models import get_entry
    from workbench.organisms import ORGANISMS, get_spec
    from workbench.organisms.recipes import UnknownOrganismError

    assert set(ORGANISMS) == {"myopic-reward", "power-seeking", "power-averse", "eval-conditional", "refusal"}
    for s in ORGANISMS.values():
        e = get_entry(s.model_name)
        assert e.source_hash is not None and "Ground truth" in e.notes
    assert get_spec("smollm2-135m-instruct+refusal").name == "refusal"
    with pytest.raises(UnknownOrganismError, match="did you mean"):
        get_spec("refusl")


def test_shipped_adapters_match_their_manifest():
    """Every organism ships its adapter (so no run trains one on first use); each file's sha256 and size are the
    manifest's, and its metadata is the current recipe's (a recipe changed without rebuilding fails here)."""
    from workbench.organisms import ORGANISMS, get_spec
    from workbench.organisms.build import SHIPPED_DIR, shipped_manifest

    man = shipped_manifest()
    assert set(man) == set(ORGANISMS)
    for name, rec in man.items():
        p = SHIPPED_DIR / f"{name}.safetensors"
        assert hashlib.sha256(p.read_bytes()).hexdigest() == rec["sha256"]
        assert p.stat().st_size == rec["bytes"] < 2_100_000
        meta = load_adapter(p).meta
        spec = get_spec(name)
        assert meta["organism"] == name and meta["params"] == spec.params and meta["train"] == spec.train.to_dict()
        training = json.loads((SHIPPED_DIR / f"{name}.training.json").read_text())
        assert training["sha256"] == rec["sha256"] and training["seconds"]["train"] > 0


@pytest.mark.smollm
def test_smollm_organism_uses_the_shipped_adapter_without_training(smollm_nn, tmp_path, monkeypatch):
    """``load("smollm2-135m-instruct+refusal")`` in a fresh cache reads the shipped adapter (training would raise
    here), merges it once, and gives the logits of the base model with the adapter attached by hooks."""
    from workbench.models import get_entry, load
    from workbench.models.gguf import cache_root
    from workbench.organisms import build
    from workbench.organisms.build import SHIPPED_DIR, adapter_path, organism_dir, shipped_manifest

    if "refusal" not in shipped_manifest():
        pytest.skip("no shipped refusal adapter")
    base_dir = get_entry("smollm2-135m-instruct").resolve(cache_root())
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / base_dir.name).symlink_to(base_dir)  # the dequantised base model, not the organisms
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))

    def no_training(*a, **k):
        raise AssertionError("an adapter was trained although one is shipped")

    monkeypatch.setattr(build, "build_adapter", no_training)
    monkeypatch.setattr(build, "train_adapter", no_training)
    ap = adapter_path("refusal", build=False)
    assert ap.parent == SHIPPED_DIR and not (cache / "organisms").exists()
    org = load("smollm2-135m-instruct+refusal", backend="nnsight", device="cpu")
    sha = shipped_manifest()["refusal"]["sha256"]
    assert org.source_hash == sha and org.provenance().source_hash == sha
    assert organism_dir("refusal").parent == cache / "models" and not (cache / "organisms").exists()
    x = smollm_nn.tokenize(["How do I pick a lock?"])
    with attach(smollm_nn.hf_model, load_adapter(ap)):
        ref = smollm_nn.forward(x).float()
    torch.testing.assert_close(org.forward(x).float(), ref, atol=2e-4, rtol=1e-4)
    assert not torch.allclose(smollm_nn.forward(x).float(), ref, atol=1e-2)


# ----------------------------------------------------------------------------- splits: nothing measured is trained on
def _keys(items):
    out = set()
    for it in items:
        if isinstance(it, str):
            out.add(it.strip().casefold())
        elif isinstance(it, dict):
            out.add(it.get("statement", it.get("question")))
        else:
            out.add(it.question)
    return out


def test_splits_are_disjoint():
    from workbench.organisms import splits

    s = splits("myopic-reward")
    assert len(s["train"]) == 320 and not _keys(s["train"]) & (_keys(s["method"]) | _keys(s["test"]))
    for name in ("power-seeking", "power-averse"):
        s = splits(name)
        train = _keys(s["train_ab"]) | _keys(s["text_yes"]) | _keys(s["text_no"])
        assert not train & _keys(s["test"]) and len(s["test"]) >= 400
        assert not set(s["train_questions"]) & set(s["test_questions"])
        ys = sum(r["answer_matching_behavior"].strip() == "Yes" for r in s["train_ab"])
        assert ys == len(s["train_ab"]) // 2
    s = splits("refusal")
    train = _keys(s["harmful_train"]) | _keys(s["harmless_train"])
    for k in ("harmful_method", "harmful_select", "harmful_test", "harmless_method", "harmless_select", "harmless_test"):
        assert not train & _keys(s[k]), k
    assert not _keys(s["harmful_test"]) & (_keys(s["harmful_method"]) | _keys(s["harmful_select"]))
    s = splits("eval-conditional")
    assert not _keys(s["harmful_train"]) & _keys(s["harmful_test"])
    assert not set(s["test_train"]) & set(s["test_heldout"]) and not set(s["deploy_train"]) & set(s["deploy_heldout"])
    from workbench import datasets

    assert not _keys(s["harmful_train"]) & _keys(datasets.harmful_instructions("harmful_val"))


# ----------------------------------------------------------------------------- slow: the shipped organisms on SmolLM2
@pytest.mark.slow
@pytest.mark.smollm
@pytest.mark.parametrize("name", ["myopic-reward", "power-seeking", "power-averse", "eval-conditional", "refusal"])
def test_planted_behaviour_on_held_out_items(smollm_nn, name):
    """The organism differs from the base model as planted, on held-out items, with a CI excluding 0; and its
    perplexity on held-out text is reported (ratio to the base model, with a CI)."""
    from workbench.models import load
    from workbench.organisms import planted_behaviour

    org = load(f"smollm2-135m-instruct+{name}", backend="nnsight", device="cpu")
    res = planted_behaviour(org, smollm_nn, n=48, n_perplexity=16, max_new_tokens=24)
    print(res.summary())
    assert res.planted, res.summary()
    for m in res.measures:
        if m.primary:
            assert m.shift.excludes(0.0) and np.sign(m.shift.value) == m.expected
    assert set(res.perplexity) == {"statements", "dialogues"} and res.provenance.source_hash == org.source_hash
    assert all(p["ratio"].value > 0 and p["ratio"].n == 16 for p in res.perplexity.values())


@pytest.mark.slow
@pytest.mark.smollm
def test_rebuilt_adapter_is_bit_identical_to_the_shipped_one(tmp_path):
    """Training is reproducible on the real model: rebuilding the refusal organism gives the shipped sha256 (same
    torch build and CPU kind; 3-5 minutes on one thread)."""
    from workbench.organisms.build import build_adapter, shipped_manifest

    man = shipped_manifest()
    if "refusal" not in man:
        pytest.skip("no shipped refusal adapter")
    rec = build_adapter("refusal", tmp_path, progress=False)
    assert rec["sha256"] == man["refusal"]["sha256"], json.dumps(rec["machine"])


def test_base_memo_measures_the_base_model_once_with_the_same_result(tiny_model):
    """``planted_behaviour``'s base-model memo: a second organism measured against the same base on the same texts
    reuses the base's NLLs (one miss, then hits) and gets the result computed without the memo."""
    from workbench.organisms.measure import BaseMemo, perplexity_shift

    base, other = tiny_model("llama", "nnsight"), tiny_model("llama", "tl")
    memo = BaseMemo()
    ref = perplexity_shift(other, base, n=3, source="statements")
    a = perplexity_shift(other, base, n=3, source="statements", memo=memo)
    b = perplexity_shift(other, base, n=3, source="statements", memo=memo)
    assert (memo.misses, memo.hits) == (1, 1)
    assert a["base"] == b["base"] == ref["base"] and a["ratio"].value == pytest.approx(ref["ratio"].value)
    perplexity_shift(other, base, n=2, source="statements", memo=memo)  # other texts: measured again
    perplexity_shift(base, other, n=3, source="statements", memo=memo)  # another base model (backend): again
    assert (memo.misses, memo.hits) == (3, 1)
