"""Models larger than one device: ``device_map`` with CPU and disk offload gives the numbers of one device."""

from __future__ import annotations

import pytest
import torch

from circuits import LogitDiff, patching_sweep
from workbench.interventions import add
from workbench.models import load

IDS = torch.tensor([[256] + list(range(40, 63))])


@pytest.mark.parametrize("fam", ["llama", "gemma2", "qwen3-moe"])
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_split_over_cpu_and_disk_equals_one_device(tiny_model, tmp_path, fam, backend):
    one = load(tiny_model(fam, "nnsight").source, backend="nnsight", device="cpu")  # the one-device reference
    a = one.arch
    dm = {a.embed: "cpu", a.final_norm: "cpu", a.lm_head: "disk"}  # tied embeddings: load() puts lm_head with embed
    for L in range(one.n_layers):
        dm[a.layer_path(L)] = "cpu" if L == 0 else "disk"
    for extra in (a.rotary, a.pos_embed):
        if extra:
            dm[extra] = "cpu"
    m = load(one.source, backend=backend, device_map=dm, offload_folder=tmp_path / "offload")  # self-check runs here
    assert m.weights_hash == one.weights_hash  # offloaded weights are hashed from the offload map
    assert any(p.device.type == "meta" for p in m.hf_model.parameters())  # really offloaded
    tol = 1e-5
    assert (m.forward(IDS) - one.forward(IDS)).abs().max().item() < tol
    sites = ["resid_post.1", "z.1", "mlp_out.0", "attn_out.1"]
    _, c1 = m.run_with_cache(IDS, sites)
    _, c2 = one.run_with_cache(IDS, sites)
    for s in sites:
        assert c1[s].device == m.device and (c1[s] - c2[s]).abs().max().item() < tol, s
    prompt = IDS[:, :12]
    assert m.generate(prompt, max_new_tokens=6, stop_at_eos=False).completion_ids == \
        one.generate(prompt, max_new_tokens=6, stop_at_eos=False).completion_ids
    v = torch.randn(one.facts.d_model, generator=torch.Generator().manual_seed(0))
    iv = add("resid_post.1", v, alpha=3.0)
    assert (m.forward(IDS, interventions=iv) - one.forward(IDS, interventions=iv)).abs().max().item() < tol
    metric = LogitDiff([40], [41])
    r1 = patching_sweep(m, IDS[:, :12], IDS[:, 12:], "resid_pre", metric=metric)
    r2 = patching_sweep(one, IDS[:, :12], IDS[:, 12:], "resid_pre", metric=metric)
    assert (r1.mean - r2.mean).abs().max().item() < tol
    g1 = m.gradients(IDS, ["resid_post.0"], lambda lg, t: lg[0, -1, 40])
    g2 = one.gradients(IDS, ["resid_post.0"], lambda lg, t: lg[0, -1, 40])
    assert (g1.grads["resid_post.0"] - g2.grads["resid_post.0"]).abs().max().item() < tol


def test_device_map_arguments_are_checked(tiny_model):
    src = tiny_model("llama", "nnsight").source
    with pytest.raises(ValueError, match="not both"):
        load(src, device="cpu", device_map="auto")
    with pytest.raises(ValueError, match="go with device_map"):
        load(src, max_memory={"cpu": "1GiB"})
