"""Re-analysis of The Personality Illusion's released runs: numbers checked against independent pandas/scipy
computations, and the stated findings."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats as ss

from workbench import datasets
from workbench.instruments.illusion import dissociation_crosscheck, paper_reanalysis, plot_paper_injection


@pytest.fixture(scope="module")
def reanalysis():
    return paper_reanalysis(n_permutations=2000)


def _csv(rel):
    return pd.read_csv(datasets.personality_illusion_path(f"data/{rel}"))


def test_stabilisation_matches_a_direct_computation(reanalysis):
    base = _csv("baseline_responses/base_models_selfreport.csv")
    inst = _csv("baseline_responses/instruct_models_selfreport.csv")
    sd_b = base[base["Model"] == "Qwen/Qwen2.5-7B"]["agreeableness"].std()
    sd_i = inst[inst["Model"] == "Qwen/Qwen2.5-7B-Instruct"]["agreeableness"].std()
    row = reanalysis.stabilisation.query("base_model == 'Qwen/Qwen2.5-7B' and trait == 'agreeableness'").iloc[0]
    assert row["log_sd_ratio"] == pytest.approx(np.log(sd_i / sd_b))
    assert len(reanalysis.stabilisation) == 6 * 6
    e = reanalysis.stabilisation_estimate
    assert e.value == pytest.approx(reanalysis.stabilisation.groupby("base_model")["log_sd_ratio"].mean().mean())


def test_prediction_correlations_equal_scipy(reanalysis):
    inst = _csv("baseline_responses/instruct_models_selfreport.csv").groupby("Model")["agreeableness"].mean()
    beh = _csv("baseline_responses/instruct_models_behavioral_tasks.csv").groupby("Model")["sycophancy_rate"].mean()
    rho = ss.spearmanr(inst.to_numpy(), beh.loc[inst.index].to_numpy()).statistic
    row = reanalysis.prediction.query("trait == 'agreeableness' and behaviour == 'sycophancy'").iloc[0]
    assert row["rho"] == pytest.approx(rho)
    assert len(reanalysis.prediction) == 30 and (reanalysis.prediction["p_bh"] >= reanalysis.prediction["p_value"]).all()


def test_injection_shift_equals_a_direct_computation_and_findings(reanalysis):
    inj = _csv("persona_injection/agreeableness/prompt_strategy_2.csv").groupby("Model")[
        ["agreeableness", "sycophancy_rate"]].mean()
    base_s = _csv("baseline_responses/instruct_models_selfreport.csv").groupby("Model")["agreeableness"].mean()
    base_b = _csv("baseline_responses/instruct_models_behavioral_tasks.csv").groupby("Model")["sycophancy_rate"].mean()
    row = reanalysis.injection.query("injected == 'agreeableness' and strategy == 2").iloc[0]
    assert row["self_report_shift"] == pytest.approx((inj["agreeableness"] - base_s.loc[inj.index]).mean())
    assert row["behaviour_shift"] == pytest.approx((inj["sycophancy_rate"] - base_b.loc[inj.index]).mean())
    # the paper's three stated findings, on its own data
    assert [f.reproduced for f in reanalysis.findings] == [True, True, True], reanalysis.summary()
    assert set(reanalysis.crosschecks) == {"agreeableness", "self_regulation"}
    assert all(cc.n == 12 for cc in reanalysis.crosschecks.values())
    assert "REPRODUCED" in reanalysis.summary() and len(reanalysis.to_dataframe()) == 3
    assert plot_paper_injection(reanalysis).axes


def test_dissociation_crosscheck_on_planted_tables():
    rng = np.random.default_rng(0)
    sr = rng.normal(1.0, 0.3, 12)
    tracking = pd.DataFrame({"condition": [f"c{i}" for i in range(12)], "self_report_shift": sr,
                             "behaviour_shift": 0.5 * sr + rng.normal(0, 0.02, 12)})
    assert dissociation_crosscheck(tracking).verdict == "agree"
    dissociated = tracking.assign(behaviour_shift=rng.normal(0, 0.3, 12))
    assert dissociation_crosscheck(dissociated).verdict != "agree"
