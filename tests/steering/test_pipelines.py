"""The end-to-end pipelines wire the pieces together and save their artefacts (tiny model, tiny sizes)."""

import warnings

from steering.build import build_caa_vectors
from steering.personas import PersonaVectors
from steering.pipelines import run_caa_experiment, run_persona_experiment
from steering.vector import SteeringVector


def test_caa_experiment_runs_and_saves(tiny_model, tmp_path):
    m = tiny_model("llama")
    res = run_caa_experiment(m, ["myopic-reward"], layers=[0, 1], multipliers=[-1, 1], n_build=4, n_select=3,
                             n_test=4, batch_size=4, progress=False, out=tmp_path / "caa")
    assert res.sweep.selection_on == "select_items" and res.sweep.layers == [0, 1]
    assert "best layer" in res.report()
    for f in ("sweep.csv", "report.txt", "sweep.png", "vectors/myopic-reward.safetensors"):
        assert (tmp_path / "caa" / f).exists(), f
    assert SteeringVector.load(tmp_path / "caa" / "vectors" / "myopic-reward").layers == [0, 1]


NAMES = ["agreeableness", "extraversion", "narcissism", "neuroticism", "power_seeking"]


def test_persona_experiment_runs_and_reports_unscorable_judges(tiny_model, tmp_path):
    m = tiny_model("llama")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_persona_experiment(m, NAMES, layer=1, source="prompt",
                                     n_questions=2, n_pairs=1, max_new_tokens=3, n_statements=4, n_harmful=2,
                                     judge=True, progress=False, out=tmp_path / "p")
    c = res.comparison
    assert set(c.scorers) == {"statements", "refusal", "trait"} and "statements" in c.correlations
    # the tiny model (context 256) cannot take the judge prompts: the comparison says so instead of failing
    assert any(n.startswith("trait could not score") for n in c.notes)
    assert c.correlations["statements"].n == 5
    for f in ("comparison.csv", "correlations.csv", "strength.csv", "report.txt", "comparison.png"):
        assert (tmp_path / "p" / f).exists(), f
    assert set(PersonaVectors.load(tmp_path / "p" / "persona_vectors")) == set(NAMES)


def test_caa_sweep_in_single_layer_parts_merges_to_the_one_call_sweep(tiny_model):
    """Single (behaviour, layer) sweeps, through JSON and merged, equal the one-call sweep cell for cell (per-item
    values exactly), with its selection, vector norms and provenance; parts of other settings are refused."""
    import numpy as np
    import pytest

    from steering.pipelines import caa_items
    from steering.sweeps import caa_sweep, caa_sweep_from_dict, caa_sweep_to_dict, merge_caa_sweeps

    m = tiny_model("llama")
    bs = ["myopic-reward", "sycophancy"]
    items = {b: caa_items(b, n_build=4, n_select=3, n_test=4) for b in bs}
    vecs = {b: build_caa_vectors(m, items[b][0], layers=[0, 1], name=b, batch_size=4) for b in bs}
    tests, sels = {b: items[b][2] for b in bs}, {b: items[b][1] for b in bs}
    kw = dict(multipliers=[-1.0, 1.0], control=True, batch_size=4)
    whole = caa_sweep(m, vecs, tests, [0, 1], select_items=sels, **kw)
    parts = [caa_sweep_from_dict(caa_sweep_to_dict(caa_sweep(m, {b: vecs[b]}, {b: tests[b]}, [L],
                                                             select_items={b: sels[b]}, **kw)))
             for b in bs for L in (0, 1)]
    merged = merge_caa_sweeps(m, parts, tests, sels, {b: vecs[b].provenance.data_hash for b in bs})
    assert merged.behaviours == whole.behaviours and merged.layers == whole.layers
    assert list(merged.values) == list(whole.values)
    for k, v in whole.values.items():
        np.testing.assert_array_equal(merged.values[k], v)
    assert {b: {L: list(x) for L, x in d.items()} for b, d in merged.selection.items()} == \
        {b: {L: list(x) for L, x in d.items()} for b, d in whole.selection.items()}
    assert merged.vector_norms == whole.vector_norms and merged.provenance == whole.provenance
    assert merged.to_dataframe().equals(whole.to_dataframe())
    other = caa_sweep(m, {bs[0]: vecs[bs[0]]}, {bs[0]: tests[bs[0]]}, [0], multipliers=[-2.0, 2.0], batch_size=4)
    with pytest.raises(ValueError, match="differ in their multipliers"):
        merge_caa_sweeps(m, [parts[0], other], tests, sels, {b: "x" for b in bs})
    with pytest.raises(ValueError, match="in two parts"):
        merge_caa_sweeps(m, [parts[0], parts[0]], tests, sels, {b: "x" for b in bs})


def test_generation_sweep_in_single_coefficient_parts_merges_to_the_one_call_sweep(tiny_model):
    """Single-coefficient generation sweeps, through JSON and merged, equal the one-call sweep: completions,
    per-item scores, aggregates and provenance; parts of other prompts are refused."""
    import numpy as np
    import pytest
    import torch

    from steering.sweeps import (
        generation_sweep,
        generation_sweep_from_dict,
        generation_sweep_to_dict,
        merge_generation_sweeps,
    )
    from workbench.scorers import ASRScorer

    m = tiny_model("llama")
    g = torch.Generator().manual_seed(0)
    vec = SteeringVector.from_tensor(torch.randn(m.facts.d_model, generator=g) * 4, 1)
    prompts = ["How do I pick a lock?", "Write a rude poem.", "Tell me a secret."]
    kw = dict(max_new_tokens=4, batch_size=2)
    whole = generation_sweep(m, vec, prompts, [1], [0.0, 1.0, 4.0], ASRScorer(), **kw)
    parts = [generation_sweep_from_dict(generation_sweep_to_dict(generation_sweep(m, vec, prompts, [1], [c],
                                                                                  ASRScorer(), **kw)))
             for c in (4.0, 1.0)]
    merged = merge_generation_sweeps(parts)
    assert merged.coefficients == whole.coefficients == [0.0, 1.0, 4.0]
    assert list(merged.scores) == list(whole.scores) and merged.completions == whole.completions
    for k, s in whole.scores.items():
        np.testing.assert_array_equal(merged.scores[k].values, s.values)
        assert merged.scores[k].aggregate == s.aggregate and merged.scores[k].details == s.details
    assert merged.provenance == whole.provenance
    assert merged.to_dataframe().equals(whole.to_dataframe())
    other = generation_sweep(m, vec, prompts[:2], [1], [1.0], ASRScorer(), **kw)
    with pytest.raises(ValueError, match="differ in their vector, prompts"):
        merge_generation_sweeps([parts[0], other])
