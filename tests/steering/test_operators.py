"""Operator semantics: position policies (the first generated token), ablation, clamping,
several operators at once, and errors that name the fix."""

import pytest
import torch

from steering import Ablate, Add, Clamp, SteeringError, steer
from steering.operators import check_positions, interventions_for
from workbench.interventions import add as iv_add

PROMPTS = ["hello there friend", "ab"]


def _forcing_vector(m, seed=0):
    """A huge vector at the last layer's resid_post: it decides the argmax whatever the context."""
    L = m.n_layers - 1
    for s in range(seed, seed + 50):
        v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(s)) * 1e3
        with steer(m, Add(f"resid_post.{L}", v, positions="all")):
            top = m.forward(PROMPTS, logits="all").argmax(-1)
        t = int(top[0, -1])
        real = m.tokenize(PROMPTS).attention_mask.bool()
        if t != m.facts.eos_token_id and bool((top[real] == t).all()):
            return L, v, t
    raise AssertionError("no forcing vector found")


def test_forward_positions_touch_exactly_the_documented_tokens(tiny_model):
    m = tiny_model("llama")
    v = torch.randn(m.facts.d_model)
    toks = m.tokenize(PROMPTS)
    _, base = m.run_with_cache(toks, ["resid_post.0"])
    real = toks.attention_mask.bool()
    last = torch.zeros_like(real)
    last[:, -1] = True
    first = torch.zeros_like(real)
    first[torch.arange(2), toks.starts] = True
    for policy, expect in [("all", real), ("prompt", real), ("generated", last), ("last", last), (0, first)]:
        with steer(m, Add("resid_post.0", v, 2.0, positions=policy)):
            _, c = m.run_with_cache(toks, ["resid_post.0"])
        diff = (c["resid_post.0"] - base["resid_post.0"]).cpu()
        expect = expect.cpu()
        touched = diff.abs().amax(-1) > 1e-6
        assert torch.equal(touched, expect), policy
        assert torch.allclose(diff[expect], (2.0 * v).expand(int(expect.sum()), -1), atol=1e-5)


def test_generation_policies_and_the_first_generated_token(tiny_model):
    m = tiny_model("llama")
    L, v, forced = _forcing_vector(m)
    n = 5
    base_ids = m.tokenize(PROMPTS[0]).input_ids[0].tolist()

    def gen(policy):
        with steer(m, Add(f"resid_post.{L}", v, positions=policy)):
            return m.generate(PROMPTS[0], max_new_tokens=n, stop_at_eos=False).completion_ids[0]

    # 'generated' and 'all' steer every step, the first generated token included
    assert gen("generated") == [forced] * n
    assert gen("all") == [forced] * n
    # 'prompt' / 'last' steer the prefill only: the first token is forced, then the unsteered model
    # continues (the last layer's output feeds no later computation, so this is exact)
    cont = m.generate(m.tokenize(torch.tensor([base_ids + [forced]])), max_new_tokens=n - 1,
                      stop_at_eos=False).completion_ids[0]
    assert gen("prompt") == [forced] + cont
    assert gen("last") == [forced] + cont
    assert cont != [forced] * (n - 1)  # so the two cases really differ
    # a forward pass under 'generated' gives the first generated token's logits
    with steer(m, Add(f"resid_post.{L}", v, positions="generated")):
        assert int(m.forward(PROMPTS[0], logits="last").argmax()) == forced


def test_directional_ablation_removes_the_direction_everywhere(tiny_model):
    for arch in ("llama", "neox"):
        m = tiny_model(arch)
        r = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(3))
        r_hat = r / r.norm()
        sites = [f"resid_post.{L}" for L in range(m.n_layers)] + [f"resid_pre.{L}" for L in range(m.n_layers)]
        _, base = m.run_with_cache(PROMPTS, sites, device="cpu")
        with steer(m, Ablate(r)):
            _, c = m.run_with_cache(PROMPTS, sites, device="cpu")
        real = m.tokenize(PROMPTS).attention_mask.bool().cpu()
        for s in sites:
            assert (c[s][real] @ r_hat).abs().max() < 1e-4, (arch, s)
            assert (base[s][real] @ r_hat).abs().max() > 1e-2  # it was there before


def test_clamp_sets_the_projection(tiny_model):
    m = tiny_model("llama")
    r = torch.randn(m.facts.d_model)
    with steer(m, Clamp("resid_post.0", r, value=7.5)):
        _, c = m.run_with_cache(PROMPTS, ["resid_post.0"], device="cpu")
    real = m.tokenize(PROMPTS).attention_mask.bool().cpu()
    proj = c["resid_post.0"][real] @ (r / r.norm())
    assert torch.allclose(proj, torch.full_like(proj, 7.5), atol=1e-4)


def test_several_operators_compose(tiny_model):
    m = tiny_model("llama")
    g = torch.Generator().manual_seed(5)
    a, b, c = (torch.randn(m.facts.d_model, generator=g) for _ in range(3))
    with steer(m, Add("resid_post.0", a, 2.0), Add("resid_post.0", b, -1.0), Add("resid_post.1", c, 0.5)):
        got = m.forward(PROMPTS)
    ref = m.forward(PROMPTS, interventions=[iv_add("resid_post.0", 2.0 * a - b), iv_add("resid_post.1", 0.5 * c)])
    assert torch.allclose(got, ref, atol=1e-5)
    # nested blocks add up and unwind exactly
    base = m.forward(PROMPTS)
    with steer(m, Add("resid_post.0", a, 2.0)):
        with steer(m, Add("resid_post.0", b, -1.0), Add("resid_post.1", c, 0.5)):
            assert torch.allclose(m.forward(PROMPTS), ref, atol=1e-5)
    assert torch.equal(m.forward(PROMPTS), base)


def test_steering_is_removed_after_an_exception(tiny_model):
    m = tiny_model("llama")
    base = m.forward(PROMPTS)
    with pytest.raises(RuntimeError):
        with steer(m, Add("resid_post.0", torch.ones(m.facts.d_model), 3.0)):
            raise RuntimeError("boom")
    assert torch.equal(m.forward(PROMPTS), base)


def test_scales():
    v = torch.tensor([3.0, 4.0])
    assert torch.allclose(Add("resid_post.0", v, 2.0).added(), 2 * v)
    assert torch.allclose(Add("resid_post.0", v, 2.0, scale="unit").added(), torch.tensor([1.2, 1.6]))
    assert torch.allclose(Add("resid_post.0", v, 0.5, scale="relative", reference_norm=10.0).added(),
                          torch.tensor([3.0, 4.0]))


def test_errors_name_the_fix(tiny_model):
    m = tiny_model("llama")
    with pytest.raises(SteeringError, match=r"wrong steering vector width for resid_post.0: the vector has 10 entries"
                                            r" \(built for other-model\) but tiny-llama has d_model=64"):
        interventions_for(m, Add("resid_post.0", torch.ones(10), source_model="other-model"))
    with pytest.raises(Exception, match="layer 9 is out of range"):
        interventions_for(m, Add("resid_post.9", torch.ones(64)))
    with pytest.raises(SteeringError, match="scale='relative' needs the mean residual norm at resid_post.0"):
        Add("resid_post.0", torch.ones(64), scale="relative")
    with pytest.raises(SteeringError, match="unknown positions 'response'"):
        Add("resid_post.0", torch.ones(64), positions="response")
    with pytest.raises(SteeringError, match="must be a 1-D tensor"):
        Add("resid_post.0", torch.ones(2, 64))
    with pytest.raises(SteeringError, match="zero norm"):
        Add("resid_post.0", torch.zeros(64), scale="unit")
    with pytest.raises(SteeringError, match="residual-width sites"):
        Ablate(torch.ones(64), kinds=("z",))
    assert check_positions([0, -1]) == [0, -1]
