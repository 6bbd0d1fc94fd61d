"""Activation store, atomic writes, resumable shards, direction vectors on disk."""

import json

import numpy as np
import pytest
import torch

from workbench.results import Provenance
from workbench.store import (
    ActivationStore,
    ShardSet,
    StoreMismatchError,
    atomic_write_json,
    collect_activations,
    length_buckets,
    write_activation_store,
)
from workbench.vectors import DirectionSet, VectorFileError

PROMPTS = [("x" * (i % 13 + 1)) + " hello" for i in range(40)]


def test_length_buckets_bound_rows_and_tokens():
    lengths = [5, 50, 7, 49, 6, 48, 8]
    b = length_buckets(lengths, batch_size=3, max_tokens=100)
    assert sorted(i for x in b for i in x) == list(range(7))
    for batch in b:
        assert len(batch) <= 3 and max(lengths[i] for i in batch) * len(batch) <= 100
    assert b[0] == [1, 3]  # longest first; a third row of width 50 would exceed 100 tokens


@pytest.mark.parametrize("positions", ["last", "all"])
def test_collect_equals_direct_and_is_lazy(tiny_model, tmp_path, positions):
    m = tiny_model("llama")
    sites = ["resid_post.0", "resid_post.1", "z.1"]
    st = collect_activations(m, PROMPTS, sites, tmp_path / "st", positions=positions, dtype="float32",
                             batch_size=8, progress=False, row_meta=[{"label": i % 2} for i in range(len(PROMPTS))])
    assert st.n_prompts == len(PROMPTS) and st.sites == ["resid_post.0", "resid_post.1", "z.1"]
    x = st.load("resid_post.1")
    if positions == "last":
        _, c = m.run_with_cache(PROMPTS[:6], ["resid_post.1"], positions="last", device="cpu")
        assert x.shape == (40, 64) and (x[:6] - c["resid_post.1"]).abs().max() < 1e-5
    else:
        spans = st.token_spans()
        for i in (0, 17, 39):
            _, c = m.run_with_cache(PROMPTS[i], ["resid_post.1"], device="cpu")
            a, b = spans[i]
            assert (x[a:b] - c["resid_post.1"][0]).abs().max() < 1e-5
    assert st.load("z.1").shape[1:] == (4, 16)
    assert [r["label"] for r in st.prompt_meta()[:4]] == [0, 1, 0, 1]
    with pytest.raises(KeyError, match="did you mean"):
        st.load("resid_post.2")


def test_resume_skips_finished_shards_and_gives_same_result(tiny_model, tmp_path, monkeypatch):
    m = tiny_model("gpt2")
    out = tmp_path / "st"
    first = collect_activations(m, PROMPTS, ["resid_post.1"], out, batch_size=8, progress=False)
    full = first.load("resid_post.1").clone()
    shards = sorted((out / "shards").glob("shard-*.safetensors"))
    assert len(shards) == 5
    # simulate a crash: two shards and the index never got written
    shards[1].unlink()
    shards[3].unlink()
    (out / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete .* resume=True"):
        ActivationStore(out)
    with pytest.raises(FileNotFoundError, match="not an activation store"):
        ActivationStore(tmp_path)
    calls = []
    real = m.run_with_cache
    monkeypatch.setattr(m, "run_with_cache", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = collect_activations(m, PROMPTS, ["resid_post.1"], out, batch_size=8, progress=False, resume=True)
    assert len(calls) == 2
    assert torch.equal(again.load("resid_post.1"), full)
    # a different job in the same directory is refused, not mixed in
    with pytest.raises(StoreMismatchError, match="different job"):
        collect_activations(m, PROMPTS[:10], ["resid_post.1"], out, batch_size=8, progress=False, resume=True)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    from workbench.store import _atomic

    p = tmp_path / "a.json"
    atomic_write_json(p, {"v": 1})

    def half_then_crash(f):
        f.write('{"v": 2, "partial')
        raise KeyboardInterrupt  # e.g. the job is killed in the middle of the write
    with pytest.raises(KeyboardInterrupt):
        _atomic(p, half_then_crash, "w")
    assert json.loads(p.read_text()) == {"v": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind


def test_shardset_fingerprint(tmp_path):
    s = ShardSet(tmp_path, {"job": 1})
    s.write_json(3, {"x": 1})
    assert s.done(3) and not s.done(4) and s.finished() == ["000003"]
    assert ShardSet(tmp_path, {"job": 1}).done(3)
    with pytest.raises(StoreMismatchError):
        ShardSet(tmp_path, {"job": 2})
    assert not ShardSet(tmp_path, {"job": 2}, resume=False).done(3)


def test_write_activation_store_streams_arrays(tmp_path):
    x = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
    st = write_activation_store(tmp_path / "arr", {"resid_post.3": x}, rows_per_shard=300,
                                row_meta=[{"y": int(i % 3)} for i in range(1000)])
    assert len(st.index["shards"]) == 4
    assert np.array_equal(st.load("resid_post.3").numpy(), x)
    seen = sorted(int(i) for idx, _ in st.iter_shards("resid_post.3", shuffle_seed=1) for i in idx)
    assert seen == list(range(1000))


def test_iter_shards_sites_reads_every_site_of_a_shard_at_once(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {f"resid_post.{k}": rng.standard_normal((500, 4)).astype(np.float32) for k in range(3)}
    st = write_activation_store(tmp_path / "s", arrays, rows_per_shard=200)
    got = {k: [] for k in arrays}
    rows = []
    for idx, parts in st.iter_shards_sites(list(arrays)):
        rows += idx.tolist()
        for k, t in zip(arrays, parts):
            got[k].append(t.clone())
    assert rows == list(range(500))
    for k, v in arrays.items():
        assert np.array_equal(torch.cat(got[k]).numpy(), v)
    with pytest.raises(KeyError, match="not in this store"):
        next(st.iter_shards_sites(["resid_post.9"]))


def test_direction_set_round_trip_and_checks(tiny_model, smollm, tmp_path):
    m = tiny_model("llama")
    v = {"resid_post.0": torch.randn(64), "resid_post.1": torch.randn(64)}
    ds = DirectionSet(v, "caa", m.provenance(seed=3), {"behaviour": "x"})
    ds.save(tmp_path / "v")
    back = DirectionSet.load(tmp_path / "v.safetensors")
    assert back.method == "caa" and back.provenance.seed == 3 and back.provenance.model_hash == m.weights_hash
    assert torch.equal(back["resid_post.1"], v["resid_post.1"]) and back.layers == [0, 1]
    back.check_compatible(m)
    with pytest.raises(VectorFileError, match="width 64 but smollm2-135m-instruct has d_model=576"):
        back.check_compatible(smollm)
    (tmp_path / "v.json").unlink()
    with pytest.raises(VectorFileError, match="missing"):
        DirectionSet.load(tmp_path / "v")
    assert not list(tmp_path.glob("*.pkl"))
    assert Provenance().to_dict()["sites"] == []
