"""Every built-in experiment runs on a tiny model (2 layers, byte tokenizer, 256-token context) with its quick
preset: nothing assumes the default model. Answers that are not one token, and prompts longer than the context,
are dropped with a note (a study with nothing left says why instead of a verdict).

The default suite runs the cheap part (the circuits studies of the main job on tiny-gpt2); the full sweep over
experiments is slow: ``pytest -m slow tests/experiments/test_tiny_runs.py``.
"""

import json

import pandas as pd
import pytest

from experiments import run_experiment
from experiments.registry import list_experiments

BUILTIN = ["cross-check", "eval-awareness", "ground-truth", "induction-signatures", "moral-sensitivity",
           "persona-non-grata", "personality-illusion", "preference-dimensions", "randomness", "self-assessment",
           "smoke"]


def _sections(out):
    m = json.loads((out / "manifest.json").read_text())
    return m, {step: json.loads((out / "steps" / step / "_sections.json").read_text()) for step in m["steps"]}


def _check_crosschecks(out):
    """Every cross-check's table has its n units and both measurements (a study that ran wrote a real one)."""
    for cc_json in (out / "steps").glob("*/*_crosscheck.json"):
        cc = json.loads(cc_json.read_text())
        df = pd.read_csv(cc_json.with_suffix(".csv"))
        assert len(df) == cc["n"] and {cc["internal_name"], cc["behavioural_name"]} <= set(df.columns)
        assert cc["verdict"] in ("agree", "disagree", "inconclusive")


def test_builtin_list_is_complete():
    assert sorted(e.name for e in list_experiments() if not e.name.startswith("test-")) == sorted(BUILTIN)


def test_circuits_studies_on_a_byte_level_model_drop_multi_token_answers_with_a_note(tmp_path):
    out = tmp_path / "cc"
    run_experiment("cross-check", out=out, preset="quick", progress=False,
                   overrides=['model.name="tiny-gpt2"', "eval_awareness.enabled=false", "personas.enabled=false"])
    m, sections = _sections(out)
    assert m["status"] == "complete" and m["preset"] == "quick"
    assert m["steps"] == ["logit-lens", "induction-heads", "patching"]
    (lens,), (heads,), (patch,) = sections["logit-lens"], sections["induction-heads"], sections["patching"]
    # every answer (" Paris", ...) is several byte tokens: nothing is left to measure, and the report says why
    assert lens["verdict"] is None and lens["summary"].startswith("Skipped: no fact's answer is one token")
    assert lens["notes"][0].startswith("dropped 24 of 24 facts whose answer is not one token for tiny-gpt2")
    assert patch["verdict"] is None and "one-token subjects and answers" in patch["summary"]
    assert patch["notes"][0].startswith("dropped 8 of 8 pairs")
    # the induction study runs on random tokens: 8 heads, fewer than the 10 units a verdict needs
    assert heads["verdict"] == "inconclusive" and "only 8 heads" in heads["verdict_detail"]
    assert len(pd.read_csv(out / "steps" / "induction-heads" / "induction_heads.csv")) == 8
    _check_crosschecks(out)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-llama", "tiny-gpt2"])
@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_experiment_runs_on_a_tiny_model(name, model, tmp_path):
    out = tmp_path / name
    report = run_experiment(name, out=out, preset="quick", overrides=[f'model.name="{model}"'], progress=False)
    m, sections = _sections(out)
    assert m["status"] == "complete" and report.exists() and m["model"]["name"] == model
    for step, secs in sections.items():
        for s in secs:
            # a section either carries a verdict or says why not (skipped, or a study that makes no claim)
            assert s["verdict"] in ("agree", "disagree", "inconclusive") or s["summary"], (step, s["title"])
    _check_crosschecks(out)
