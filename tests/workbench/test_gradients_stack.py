"""Gradients at sites equal plain autograd; the stack runner equals full forwards."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.models.stack import StackRunner
from workbench.sites import Site

PROMPTS = ["hello world, this is", "abc"]


def metric(logits, toks):
    return logits[:, -1, 10].sum() - logits[:, -1, 20].sum()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_gradients_equal_autograd(tiny_model, arch, backend):
    m = tiny_model(arch, backend)
    toks = m.tokenize(PROMPTS)
    r = m.gradients(toks, ["resid_pre.1", "z.0", "head_out.1", "attn_out.1"], metric)
    hf = AutoModelForCausalLM.from_pretrained(m.source, attn_implementation="eager").eval().to(m.device)
    layer = hf.model.layers[1] if arch == "llama" else hf.transformer.h[1]
    store = {}

    def pre(mod, args, kw):
        h = (args[0] if args else kw["hidden_states"]).detach().requires_grad_(True)
        store["h"] = h
        return ((h,) + args[1:], kw) if args else (args, {**kw, "hidden_states": h})
    handle = layer.register_forward_pre_hook(pre, with_kwargs=True)
    out = hf(toks.input_ids, attention_mask=toks.attention_mask, position_ids=toks.position_ids).logits
    value = metric(out, toks)
    value.backward()
    handle.remove()
    assert abs(r.value - value.item()) < 1e-4
    assert (r.grads["resid_pre.1"].cpu() - store["h"].grad.cpu()).abs().max() < 1e-5
    # each head's output enters the residual unchanged: its gradient is attn_out's
    assert torch.equal(r.grads["head_out.1"][:, :, 2], r.grads["attn_out.1"])
    # first-order check: metric(x + eps*g) - metric(x) ~ eps*|g|^2 at resid_pre.1
    from workbench.interventions import add
    g = r.grads["resid_pre.1"]
    eps = 1e-3
    moved = metric(m.forward(toks, interventions=add("resid_pre.1", g, alpha=eps)), toks).item()
    assert abs((moved - r.value) - eps * (g * g).sum().item()) < 0.05 * eps * (g * g).sum().item()


@pytest.mark.drift
@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_stack_runner_matches_full_forward(tiny_model, arch, backend):
    m = tiny_model(arch, backend)
    r = StackRunner(m)
    toks = m.tokenize(PROMPTS)
    ids, am, pos = toks.input_ids, toks.attention_mask, toks.position_ids
    logits, cache = m.run_with_cache(toks, [Site("resid_pre", L) for L in range(m.n_layers)])
    real = am.bool()
    h = r.embed(ids, pos)
    assert (h - cache["resid_pre.0"])[real].abs().max() < 1e-6
    assert (r.logits(r.run(h, 0, attention_mask=am, position_ids=pos)) - logits)[real].abs().max() < 1e-4
    # start at layer 1 from the cached residual, positions >= p from a prefix KV cache
    p = 3
    prefix = r.prefix_cache(ids, am, pos, p)
    out = r.logits(r.run(cache["resid_pre.1"][:, p:], 1, attention_mask=am, position_ids=pos[:, p:],
                         cache=r.expand(prefix, 2)))
    assert (out - logits[:, p:])[real[:, p:]].abs().max() < 1e-4
    assert prefix.get_seq_length() == p  # expand() copied; the prefix is untouched
    # raw site hooks read the same activations as the backend
    seen = {}
    r.run(h, 0, attention_mask=am, position_ids=pos, hooks={Site("z", 1): lambda x: seen.setdefault("z", x)})
    _, c = m.run_with_cache(toks, ["z.1"])
    assert (seen["z"] - c["z.1"])[real].abs().max() < 1e-5


@pytest.mark.drift
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_capture_run_and_prefix_cache_resume_equals_a_full_forward(backend):
    """The shared partial-forward engine: a captured run's activations equal run_with_cache's; resuming layer 1
    from the captured residual with a tiled prefix cache reproduces the full forward's logits for every row."""
    from workbench.models import load
    from workbench.models.stack import StackRunner, capture_run, prefix_cache
    from workbench.sites import Site

    m = load("tiny-llama", backend=backend, device="cpu")
    ids = torch.tensor([[1, 5, 9, 23, 7, 11, 2]])
    sites = [Site("resid_pre", 1), Site("resid_post", 0), Site("mlp_out", 1)]
    run = capture_run(m, ids, sites)
    _, cache = m.run_with_cache(ids, sites)
    for s in sites:
        torch.testing.assert_close(run.acts[s], cache[s], atol=1e-5, rtol=1e-5)
    p0, n = 3, 4
    r = StackRunner(m)
    T = ids.shape[1]
    h = run.acts[Site("resid_pre", 1)][:, p0:].expand(n, -1, -1)
    out = r.run(h, 1, attention_mask=torch.ones(n, T, dtype=torch.long),
                position_ids=torch.arange(p0, T).expand(n, -1), cache=prefix_cache(run.kv, p0, repeat=n))
    full = m.forward(ids)
    for row in range(n):
        torch.testing.assert_close(r.logits(out[row:row + 1]), full[:, p0:], atol=1e-4, rtol=1e-4)
    assert run.kv[0][0].shape[2] == T  # the stored keys are untouched by the resumed run
