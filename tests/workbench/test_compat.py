"""transformers drift: the compatibility layer, the load-time self-check, refused bad values."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.errors import InputError, WorkbenchError
from workbench.interventions import InterventionError, add, replace, scale
from workbench.models import compat
from workbench.models.hooked import ContextLengthError, ModelSelfCheckError
from workbench.sites import Site

pytestmark = pytest.mark.drift


class _NewLayer(torch.nn.Module):
    def forward(self, hidden_states, attention_mask=None, position_ids=None, cache=None, use_cache=False, **kwargs):
        self.got = dict(cache=cache, use_cache=use_cache, **kwargs)
        return hidden_states + 1


class _OldLayer(torch.nn.Module):
    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_values=None, use_cache=False):
        self.got = dict(past_key_values=past_key_values, use_cache=use_cache)
        return (hidden_states * 2,)


def test_cache_kwarg_follows_the_signature():
    assert compat.cache_kwarg(_NewLayer()) == "cache"
    assert compat.cache_kwarg(_OldLayer()) == "past_key_values"
    with pytest.raises(TypeError, match="takes no KV cache"):
        compat.cache_kwarg(torch.nn.Linear(2, 2))
    sentinel = object()
    new, old = _NewLayer(), _OldLayer()
    h = torch.zeros(1, 2, 3)
    assert torch.equal(compat.call_layer(new, h, attention_mask=None, position_ids=None, position_embeddings=(1, 2),
                                         cache=sentinel, use_cache=True), h + 1)
    assert new.got["cache"] is sentinel and new.got["position_embeddings"] == (1, 2)
    # a layer without **kwargs gets only what it declares, and its tuple output is unwrapped
    assert torch.equal(compat.call_layer(old, h + 1, attention_mask=None, position_ids=None, position_embeddings=(1, 2),
                                         cache=sentinel, use_cache=True), (h + 1) * 2)
    assert old.got["past_key_values"] is sentinel


def test_caches_built_and_read_back():
    g = torch.Generator().manual_seed(0)
    kv = [(torch.randn(1, 2, 5, 4, generator=g), torch.randn(1, 2, 5, 4, generator=g)) for _ in range(3)]
    c = compat.cache_from_kv(kv)
    assert compat.cache_length(c) == 5 and compat.cache_length(None) == 0
    for (k, v), (k2, v2) in zip(kv, compat.cache_kv(c)):
        assert torch.equal(k, k2) and torch.equal(v, v2)
    r = compat.repeat_cache(c, 3)
    assert compat.cache_kv(r)[1][0].shape == (3, 2, 5, 4) and compat.cache_kv(c)[1][0].shape[0] == 1
    assert torch.equal(compat.cache_kv(r)[2][1][2], kv[2][1][0])
    c.update(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4), 0)  # growing the cache leaves the given tensors alone
    assert kv[0][0].shape[2] == 5


def test_apply_rotary_matches_the_llama_implementation():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb  # the reference, in the test only

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 3, 8, generator=g)
    cos, sin = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    ref, _ = apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), cos, sin)
    assert torch.allclose(compat.apply_rotary(x, cos, sin), ref.transpose(1, 2), atol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_self_check_passes_on_every_architecture(tiny_model, arch, backend):
    diffs = tiny_model(arch, backend).self_check()
    assert set(diffs) == {"cached decoding", "stack runner"} and max(diffs.values()) < 1e-5


@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_self_check_catches_an_empty_kv_cache(tiny_model, backend):
    """What transformers 5.25 did to the TransformerLens backend: the cache reaches attention under a name
    it does not read, so it stays empty. Simulated here (whatever the installed version) by dropping the
    cache on its way into every attention module."""
    m = tiny_model("llama", backend)

    def drop_cache(module, args, kwargs):
        return args, {k: (None if k in compat.CACHE_KWARGS else v) for k, v in kwargs.items()}
    handles = [m.hf_model.model.layers[i].self_attn.register_forward_pre_hook(drop_cache, with_kwargs=True)
               for i in range(m.n_layers)]
    try:
        with pytest.raises(ModelSelfCheckError, match="cached decoding") as e:
            m.self_check()
        assert "transformers" in str(e.value) and isinstance(e.value, WorkbenchError)
    finally:
        for h in handles:
            h.remove()
    m.self_check()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_intervention_values_are_refused(bad):
    v = torch.ones(8)
    v[3] = bad
    with pytest.raises(InterventionError, match="non-finite"):
        add("resid_post.0", v)
    with pytest.raises(InterventionError, match="non-finite"):
        replace("resid_post.0", v)
    with pytest.raises(InterventionError, match="alpha"):
        add("resid_post.0", torch.ones(8), alpha=bad)
    with pytest.raises(InterventionError, match="not a finite"):
        scale("resid_post.0", bad)
    assert add("resid_post.0", torch.ones(8), alpha=2.0).alpha == 2.0


def test_token_ids_outside_the_vocabulary_are_refused(tiny_model):
    m = tiny_model("llama")
    V = m.facts.d_vocab
    with pytest.raises(ValueError, match="outside"):
        m.forward(torch.tensor([[1, 2, V]]))
    with pytest.raises(ValueError, match="outside"):
        m.forward(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="integer tensor"):
        m.forward(torch.tensor([[1.0, 2.0]]))
    assert m.forward(torch.tensor([[1, V - 1]])).shape == (1, 2, V)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
def test_generation_past_the_context_is_refused(tiny_model, arch):
    m = tiny_model(arch)
    n_ctx = m.facts.n_ctx
    prompt = torch.arange(n_ctx - 3) % 200 + 10
    with pytest.raises(ContextLengthError, match=r"max_new_tokens <= 3"):
        m.generate(m.tokenize(prompt), max_new_tokens=4)
    assert len(m.generate(m.tokenize(prompt), max_new_tokens=3, stop_at_eos=False).completion_ids[0]) == 3
    with pytest.raises(ValueError, match="positive integer"):
        m.generate("hi", max_new_tokens=0)
    with pytest.raises(ValueError, match="positive integer"):
        m.generate("hi", batch_size=-1)


def test_a_bare_string_is_one_site(tiny_model):
    m = tiny_model("llama")
    _, cache = m.run_with_cache("hello", "resid_post.1")
    assert list(cache) == [Site("resid_post", 1)]
    _, cache = m.run_with_cache("hello", ["resid_post.1", "z.0"])
    assert len(cache) == 2


def test_zero_and_negative_counts_are_refused(tiny_model):
    from circuits.heads import head_scores, repeated_random_tokens

    m = tiny_model("llama")
    for kw in ({"n_seqs": 0}, {"n_seqs": -2}, {"half": 0}, {"batch_size": 0}):
        with pytest.raises(InputError, match=next(iter(kw))):
            head_scores(m, **kw)
    with pytest.raises(InputError):
        repeated_random_tokens(m, n_seqs=0)
    assert not math.isnan(float(head_scores(m, n_seqs=1, half=4).get("induction", "target").sum()))
