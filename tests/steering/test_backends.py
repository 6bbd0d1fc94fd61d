"""Steering through the TransformerLens and nnsight backends gives the same model: identical greedy
generations and logits within 1e-4 (SmolLM2-135M-Instruct, and the tiny models)."""

import pytest
import torch

from steering import Ablate, Add, SteeringVector, steer
from workbench.sites import Site

PROMPTS = ["Tell me about the ocean.", "What is your favourite colour?", "Hi"]


def _ops(d, L, seed=0):
    g = torch.Generator().manual_seed(seed)
    v1, v2, r = (torch.randn(d, generator=g) for _ in range(3))
    return {
        "add_all": [Add(f"resid_post.{L}", v1, 8.0, positions="all")],
        "add_generated": [Add(f"resid_post.{L}", v1, 8.0, positions="generated")],
        "add_prompt": [Add(f"resid_pre.{L}", v1, 8.0, positions="prompt")],
        "several+ablate": [Add(f"resid_post.{L}", v1, 5.0, positions="generated"),
                           Add(f"resid_post.{L + 1}", v2, -5.0, positions="all"), Ablate(r)],
    }


def _check(tl, nn, L, max_new_tokens):
    toks = tl.tokenize(PROMPTS, chat=True)
    real = toks.attention_mask.bool()
    base = tl.generate(PROMPTS, chat=True, max_new_tokens=max_new_tokens).completion_ids
    changed = 0
    for name, ops in _ops(tl.facts.d_model, L).items():
        with steer(tl, *ops):
            lt = tl.forward(toks)
            gt = tl.generate(PROMPTS, chat=True, max_new_tokens=max_new_tokens)
        with steer(nn, *ops):
            ln = nn.forward(toks)
            gn = nn.generate(PROMPTS, chat=True, max_new_tokens=max_new_tokens)
        assert (lt - ln)[real].abs().max().item() < 1e-4, name
        assert gt.completion_ids == gn.completion_ids, name
        changed += gt.completion_ids != base
    assert changed >= 3  # the steering does change the generations


@pytest.mark.smollm
def test_smollm_backends_agree_under_steering(smollm, smollm_nn):
    _check(smollm, smollm_nn, 12, max_new_tokens=12)


@pytest.mark.parametrize("arch", ["gpt2", "neox"])
def test_tiny_backends_agree_under_steering(tiny_model, arch):
    _check(tiny_model(arch, "tl"), tiny_model(arch, "nnsight"), 0, max_new_tokens=6)


@pytest.mark.smollm
def test_saved_vector_applies_identically(smollm, smollm_nn, tmp_path):
    v = SteeringVector({Site("resid_post", 10): torch.randn(576, generator=torch.Generator().manual_seed(1))}, "x",
                       smollm.provenance())
    v.save(tmp_path / "v")
    w = SteeringVector.load(tmp_path / "v")
    with w.apply(smollm, alpha=6.0, positions="generated"):
        a = smollm.generate(PROMPTS[:2], chat=True, max_new_tokens=8).completions
    with w.apply(smollm_nn, alpha=6.0, positions="generated"):
        b = smollm_nn.generate(PROMPTS[:2], chat=True, max_new_tokens=8).completions
    assert a == b
