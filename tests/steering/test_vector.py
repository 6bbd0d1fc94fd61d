"""SteeringVector: the on-disk format, lookup, controls, and the apply() context manager."""

import json

import pytest
import torch

from steering import LayerError, SteeringError, SteeringVector, probe_vector
from workbench.interventions import add as iv_add
from workbench.results import Provenance
from workbench.sites import Site
from workbench.vectors import DirectionSet


def _vec(d=64, layers=(0, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    return SteeringVector({Site("resid_post", L): torch.randn(d, generator=g) for L in layers}, "caa",
                          Provenance(model="tiny-llama", model_hash="abc", data_hash="dh", sites=("resid_post.0",)),
                          {"name": "test"})


def test_save_load_roundtrip_keeps_type_vectors_and_metadata(tmp_path):
    v = _vec()
    path = v.save(tmp_path / "sub" / "vec")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["method"] == "caa" and meta["provenance"]["model"] == "tiny-llama"
    assert meta["provenance"]["data_hash"] == "dh" and set(meta["norms"]) == {"resid_post.0", "resid_post.1"}
    assert meta["norms"]["resid_post.1"] == pytest.approx(float(v.vector(1).norm()))
    w = SteeringVector.load(tmp_path / "sub" / "vec.json")
    assert isinstance(w, SteeringVector) and w.meta == v.meta and w.provenance.model_hash == "abc"
    for s in v:
        assert torch.equal(w.vectors[s], v.vectors[s])
    assert b"pickle" not in path.read_bytes()[:200]


def test_a_probe_direction_file_loads_as_a_steering_vector(tmp_path, tiny_model):
    m = tiny_model("llama")
    d = torch.randn(64)
    DirectionSet({"resid_post.1": d}, "probe", Provenance(model="tiny-llama")).save(tmp_path / "probe")
    v = SteeringVector.load(tmp_path / "probe")
    assert v.method == "probe" and torch.equal(v.vector(1), d)
    with v.apply(m, alpha=2.0, scale="unit"):
        got = m.forward("abc")
    assert torch.allclose(got, m.forward("abc", interventions=[iv_add("resid_post.1", 2.0 * d / d.norm())]), atol=1e-6)
    pv = probe_vector(d, 1, model=m, name="p")
    assert pv.provenance.model == "tiny-llama" and pv.provenance.model_hash == m.weights_hash
    with pytest.raises(SteeringError, match="width 10 but tiny-llama has d_model=64"):
        probe_vector(torch.ones(10), 1, model=m)


def test_lookup_and_select():
    v = _vec(layers=(2, 5, 7))
    assert v.site_at(5) == Site("resid_post", 5) and v.site_at("resid_post.7") == Site("resid_post", 7)
    with pytest.raises(LayerError, match=r"no vector at layer 3; this vector has layers \[2, 5, 7\]"):
        v.site_at(3)
    with pytest.raises(LayerError, match="say which layer"):
        v.site_at(None)
    assert v.select([5]).layers == [5]


def test_apply_equals_interventions_and_unwinds(tiny_model):
    m = tiny_model("llama")
    v = _vec()
    base = m.forward("hello")
    with v.apply(m, layers=[0, 1], alpha=-1.5) as mm:
        assert mm is m
        got = m.forward("hello")
    ref = m.forward("hello", interventions=[iv_add("resid_post.0", -1.5 * v.vector(0)),
                                             iv_add("resid_post.1", -1.5 * v.vector(1))])
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.equal(m.forward("hello"), base)
    # relative scale: alpha is a fraction of the reference norm
    op = v.at(0, 0.5, scale="relative", norms={"resid_post.0": 8.0})
    assert op.added_norm == pytest.approx(4.0)
    with pytest.raises(SteeringError, match="no reference norm for resid_post.1"):
        v.at(1, 0.5, scale="relative", norms={0: 8.0})


def test_random_control_has_equal_norms_and_is_reproducible():
    v = _vec(layers=(0, 1, 2))
    r1, r2 = v.random_like(seed=3), v.random_like(seed=3)
    for s in v:
        assert torch.equal(r1.vectors[s], r2.vectors[s])
        assert r1.vectors[s].norm() == pytest.approx(float(v.vectors[s].norm()), rel=1e-5)
        assert abs(torch.nn.functional.cosine_similarity(r1.vectors[s], v.vectors[s], dim=0)) < 0.6
    # a site's control does not depend on the other sites
    assert torch.equal(v.select([1]).random_like(seed=3).vector(1), r1.vector(1))
    assert not torch.equal(v.random_like(seed=4).vector(1), r1.vector(1))
    assert r1.method == "random" and r1.meta["control_for"] == "caa"


def test_cosine_normalized_dataframe():
    v = _vec()
    assert all(c == pytest.approx(1.0) for c in v.cosine(v.scaled(3.0)).values())
    assert all(n == pytest.approx(1.0) for n in v.normalized().norms().values())
    df = v.to_dataframe()
    assert list(df.layer) == [0, 1] and set(df.columns) >= {"site", "norm", "method", "model", "data_hash"}
