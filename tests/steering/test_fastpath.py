"""The residual replay equals a full steered forward through each backend."""

import pytest
import torch

from steering import Add, steer
from steering.fastpath import ResidualReplay

PROMPTS = ["hello there how are you", "a b c", "The capital of France is"]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "neox"])
@pytest.mark.parametrize("backend", ["tl", "nnsight"])
def test_replay_matches_full_forward(tiny_model, arch, backend):
    m = tiny_model(arch, backend)
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(0)) * 3
    base = m.forward(m.tokenize(PROMPTS, chat=True), logits="last")
    for kind in ("resid_pre", "resid_post"):
        for positions in ("all", "generated", [-2]):
            site = f"{kind}.0"
            rp = ResidualReplay(m, PROMPTS, site, positions=positions, batch_size=2)
            with steer(m, Add(site, v, positions=positions)):
                full = m.forward(m.tokenize(PROMPTS, chat=True), logits="last")
            assert (rp.last_logits(v) - full.cpu()).abs().max() < 1e-4
            assert (rp.last_logits() - base.cpu()).abs().max() < 1e-4
            assert (full - base).abs().max() > 1e-2


def test_replay_runs_only_the_steered_positions(tiny_model):
    """Positions before the first steered one cannot change: the replay keeps their keys and values from
    the unsteered pass and reruns only the steered columns (still equal to the full forward, twice)."""
    m = tiny_model("llama", "tl")
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(1)) * 3
    site, positions = "resid_post.0", [-3, -2, -1]
    rp = ResidualReplay(m, PROMPTS, site, positions=positions, batch_size=3)
    (_idx, tokens, h, _mask, p0, kv), = rp._batches
    assert p0 == tokens.input_ids.shape[1] - 3 and h.shape[1] == 3 and kv is not None
    with steer(m, Add(site, v, positions=positions)):
        full = m.forward(m.tokenize(PROMPTS, chat=True), logits="last")
    for _ in range(2):  # the stored prefix is not extended by a replay
        assert (rp.last_logits(v) - full.cpu()).abs().max() < 1e-4
    assert ResidualReplay(m, PROMPTS, site, positions="all")._batches[0][4] == 0  # every column steered: no prefix


@pytest.mark.parametrize("positions", ["all", [-2, -1]])
def test_replays_of_several_sites_share_one_pass(tiny_model, positions):
    m = tiny_model("llama", "tl")
    v = torch.randn(m.facts.d_model, generator=torch.Generator().manual_seed(2)) * 3
    sites = ["resid_post.0", "resid_pre.1", "resid_post.1"]
    many = ResidualReplay.for_sites(m, PROMPTS, sites, positions=positions, batch_size=2)
    assert [s.name for s in many] == sites
    for site, rp in many.items():
        one = ResidualReplay(m, PROMPTS, site, positions=positions, batch_size=2)
        assert torch.allclose(rp.last_logits(v), one.last_logits(v), atol=1e-5)
        assert rp.batch_norms == pytest.approx(one.batch_norms, rel=1e-5)
        with steer(m, Add(site, v, positions=positions)):
            full = m.forward(m.tokenize(PROMPTS, chat=True), logits="last")
        assert (rp.last_logits(v) - full.cpu()).abs().max() < 1e-4


def test_replay_rejects_other_sites(tiny_model):
    with pytest.raises(ValueError, match="resid_pre/resid_post"):
        ResidualReplay(tiny_model("llama"), PROMPTS, "mlp_out.0")
