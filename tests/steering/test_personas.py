"""Persona definitions (the project's own) and persona vectors against hand computation."""

import json

import numpy as np
import pytest
import torch

from steering.personas import Persona, PersonaError, PersonaVectors, load_personas, persona_vectors
from steering.record import record_activations


def test_shipped_personas_are_well_formed():
    ps = load_personas()
    assert len(ps) >= 6 and len({p.name for p in ps}) == len(ps)
    assert {p.kind for p in ps} == {"big_five", "dark_triad", "safety"}
    for p in ps:
        assert len(p.high) == len(p.low) == 5 and p.description and p.trait
        # matched pairs: similar lengths, so the contrast is not verbosity
        for h, lo in zip(p.high, p.low):
            assert 0.6 < len(h) / len(lo) < 1.6, (p.name, h, lo)
    assert [p.name for p in load_personas(["narcissism", "agreeableness"])] == ["narcissism", "agreeableness"]
    with pytest.raises(PersonaError, match="unknown persona 'evil'"):
        load_personas(["evil"])
    with pytest.raises(PersonaError, match="matched high/low"):
        Persona("x", "k", "t", "d", ("a",), ())


def test_personas_are_our_own_and_map_to_existing_statement_files(shared_data):
    from workbench import datasets

    ours = {s for p in load_personas() for s in p.high + p.low}
    theirs = set()
    for f in (shared_data / "persona_vectors").rglob("*.json"):
        for pair in json.loads(f.read_text()).get("instruction", []):
            theirs |= {pair["pos"], pair["neg"]}
    assert theirs and not (ours & theirs)  # no system prompt copied from the unlicensed dataset
    for p in load_personas():
        assert p.statements in datasets.persona_traits(), p.statements


def test_prompt_source_is_the_mean_difference_at_the_last_prompt_token(tiny_model):
    m = tiny_model("llama")
    p = load_personas(["extraversion"])[0]
    qs = ["How was your day?", "What is your hobby?"]
    pv = persona_vectors(m, [p], [0, 1], questions=qs, n_pairs=2, source="prompt")
    items_hi = [{"prompt": q, "system": p.high[k]} for k in range(2) for q in qs]
    items_lo = [{"prompt": q, "system": p.low[k]} for k in range(2) for q in qs]
    for L in (0, 1):
        a = record_activations(m, items_hi, [L])[L].mean(0) - record_activations(m, items_lo, [L])[L].mean(0)
        assert torch.allclose(pv["extraversion"].vector(L), a, atol=1e-5)
    assert pv["extraversion"].meta["n_positive"] == 4 and pv.responses == []


def test_response_source_averages_response_tokens_and_roundtrips(tiny_model, tmp_path):
    m = tiny_model("llama")
    ps = load_personas(["agreeableness", "neuroticism"])
    pv = persona_vectors(m, ps, [1], questions=["Hi?", "Why?"], n_pairs=1, max_new_tokens=4)
    assert len(pv.responses) == 2 * 2 * 2  # personas x poles x questions
    for p in ps:
        rows = [r for r in pv.responses if r["persona"] == p.name and r["kept"]]
        sysp = {"high": p.high[0], "low": p.low[0]}
        acts = {pole: record_activations(m, [{"prompt": r["question"], "system": sysp[pole], "response": r["response"]}
                                             for r in rows if r["pole"] == pole], [1], positions="response")[1]
                for pole in ("high", "low")}
        assert torch.allclose(pv[p.name].vector(1), acts["high"].mean(0) - acts["low"].mean(0), atol=1e-5)
    with torch.no_grad():
        gen = m.generate("Hi?", chat=True, system=ps[0].high[0], max_new_tokens=4).completions[0]
    assert next(r for r in pv.responses if r["persona"] == ps[0].name and r["pole"] == "high"
                and r["question"] == "Hi?")["response"] == gen
    pv.save(tmp_path / "pv")
    back = PersonaVectors.load(tmp_path / "pv")
    assert back.source == "response" and set(back) == {"agreeableness", "neuroticism"}
    assert torch.equal(back["neuroticism"].vector(1), pv["neuroticism"].vector(1)) and back.responses == pv.responses
    assert list(pv.to_dataframe().persona) == ["agreeableness", "neuroticism"]
    assert pv.cosine_matrix(1).shape == (2, 2)


def test_finetuning_shift_recovers_a_planted_residual_shift(tiny_model):
    """A hand-made 'fine-tune': adding c * u to the bias of layer L's MLP output projection shifts resid_post.L by
    exactly c * u at every position, so the projection on u is c for every prompt (and 0 for a model vs itself)."""
    import copy

    from steering.personas import finetuning_shift
    from steering.vector import SteeringVector
    from workbench.models import load
    from workbench.sites import Site

    base = tiny_model("gpt2", "nnsight")
    g = torch.Generator().manual_seed(0)
    v = torch.randn(base.facts.d_model, generator=g)
    vec = SteeringVector({Site("resid_post", 0): v * 3.0}, "persona", base.provenance(), {})
    tuned_hf = copy.deepcopy(base.hf_model)
    with torch.no_grad():
        tuned_hf.transformer.h[0].mlp.c_proj.bias += 0.7 * v / v.norm()
    tuned = load(tuned_hf, backend="nnsight", tokenizer=base.tokenizer, device="cpu", name="tuned")
    prompts = ["How are you?", "What do you want most?", "Tell me about power."]
    fs = finetuning_shift(tuned, base, vec, 0, prompts)
    np.testing.assert_allclose(fs.values, 0.7, atol=1e-5)
    assert fs.estimate.n == 3 and fs.site == "resid_post.0" and len(fs.to_dataframe()) == 3
    same = finetuning_shift(base, base, vec, 0, prompts)
    np.testing.assert_allclose(same.values, 0.0, atol=1e-6)
