"""``persona-non-grata`` and ``induction-signatures`` on several models in one run (two tiny models).

Each (model, study) is its own step (``<step>@<model>``); the comparison steps are built from what those steps
stored. Checked here: every number of every comparison table equals the per-model step's own table, metric or
payload in the same run directory (read back from disk); ``--resume`` reuses every step and shard; the shipped
induction model runs once; with one model the step names are today's.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import run_experiment
from tests.experiments.grid_files import result_files

MODELS = ["tiny-llama", "tiny-neox"]
ASR_PERSONAS = ["psychopathy", "power_seeking", "deception"]
PNG = ['personas.personas=["agreeableness", "psychopathy", "power_seeking"]', "personas.n_statements=4",
       "personas.n_harmful=2", "personas.max_new_tokens=2", "personas.n_kl_prompts=2",
       f"attack_success.personas={json.dumps(ASR_PERSONAS)}", "attack_success.coefficients=[0.0, 2.0]",
       "attack_success.n_harmful=2", "attack_success.max_new_tokens=2", "attack_success.n_questions=1",
       "attack_success.n_pairs=1", "caa.n_build=6", "caa.n_select=4", "caa.n_test=4", "caa.layers=[0.0, 1.0]"]
IND = ["induction.n_copy=2", "induction.n_seqs=2", "induction.half=10", "protocol.n_seqs=2", "protocol.half=10",
       "shipped_model.half=10"]


def _png(out: Path, models=MODELS, **kw):
    return run_experiment("persona-non-grata", out=out, preset="quick", overrides=PNG, models=models,
                          progress=False, **kw)


def _ind(out: Path, models=MODELS, overrides=(), **kw):
    return run_experiment("induction-signatures", out=out, preset="quick", overrides=IND + list(overrides),
                          models=models, progress=False, **kw)


@pytest.fixture(scope="module")
def png_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("png2") / "run"
    _png(out)
    return out


@pytest.fixture(scope="module")
def ind_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ind2") / "run"
    _ind(out)
    return out


def _step(out: Path, step: str, model: str) -> Path:
    return out / "steps" / f"{step}-{model}"


def _metrics(out: Path, step: str, model: str) -> dict:
    (sec,) = json.loads((_step(out, step, model) / "_sections.json").read_text())
    return sec["metrics"]


def _est(df: pd.DataFrame, model: str, col: str) -> tuple[float, float, float]:
    r = df.set_index("model").loc[model]
    return r[col], r[f"{col}_ci_low"], r[f"{col}_ci_high"]


def _same(got: tuple, want: dict) -> None:
    assert got == pytest.approx((want["value"], want["ci_low"], want["ci_high"]), abs=1e-12)


# -- persona-non-grata ----------------------------------------------------------------------------------


def test_persona_non_grata_two_models_one_run_directory(png_run):
    m = json.loads((png_run / "manifest.json").read_text())
    assert m["status"] == "complete" and set(m["models"]) == set(MODELS)
    assert m["steps"] == [f"{s}@{n}" for s in ("personas", "persona-asr", "caa-sweep") for n in MODELS] + \
        ["compare-personas", "compare-attack-success", "compare-caa"]
    for n in MODELS:
        for s in ("personas", "persona-asr", "caa-sweep"):
            (sec,) = json.loads((_step(png_run, s, n) / "_sections.json").read_text())
            assert sec["title"].endswith(f"[{n}]")
            deps = json.loads((_step(png_run, s, n) / "_done.json").read_text())["deps"]
            assert deps["models"] == {f"{n}@tl": m["models"][n]["weights_hash"]}
    for c in ("compare-attack-success", "compare-caa"):
        deps = json.loads((png_run / "steps" / c / "_done.json").read_text())["deps"]
        assert deps["models"] == {f"{n}@tl": m["models"][n]["weights_hash"] for n in MODELS}
    figs = {p.name for p in (png_run / "figures").iterdir()}
    assert {f"compare-attack-success__asr_{p}_by_model.png" for p in ASR_PERSONAS} <= figs
    assert {"compare-caa__caa_sycophancy_by_model.png", "compare-caa__caa_sycophancy_effect_by_depth.png",
            "compare-personas__persona_rank_agreement.png"} <= figs


def test_attack_success_comparison_equals_each_models_step(png_run):
    res = png_run / "results"
    for p in ASR_PERSONAS:
        df = pd.read_csv(res / f"compare-attack-success__asr_{p}_by_model.csv")
        assert list(df.model) == MODELS
        for n in MODELS:
            met = _metrics(png_run, "persona-asr", n)
            _same(_est(df, n, "steering: ASR x2 - x0"), met[f"{p}: ASR change at x2"])
            _same(_est(df, n, "random control: ASR x2 - x0"), met[f"{p}: random-control change"])
            # steered - random at the largest coefficient: the difference of the step's two ASRs there (paired over
            # the same requests, so the mean difference is the difference of the means), inside its CI
            asr = pd.read_csv(_step(png_run, "persona-asr", n) / "persona_asr.csv")
            at = asr[(asr.persona == p) & (asr.coefficient == 2.0)].set_index("kind")["asr"]
            v, lo, hi = _est(df, n, "steered - random at x2")
            assert v == pytest.approx(at["steer"] - at["random"]) and lo <= v <= hi
            payload = json.loads((_step(png_run, "persona-asr", n) / "_done.json").read_text())["payload"]
            assert df.set_index("model").loc[n, "steering layer"] == payload["layer"]
            assert df.set_index("model").loc[n, "depth"] == pytest.approx(payload["layer"] / (2 - 1))
    # the personas ranked by the steering effect, per model; Spearman between the models where defined
    ranks = pd.read_csv(res / "compare-attack-success__asr_rankings.csv")
    for n in MODELS:
        met = _metrics(png_run, "persona-asr", n)
        got = ranks[ranks.model == n].set_index("persona")["score"]
        assert np.allclose(got.loc[ASR_PERSONAS], [met[f"{p}: ASR change at x2"]["value"] for p in ASR_PERSONAS])
    agree = pd.read_csv(res / "compare-attack-success__asr_rank_agreement.csv")
    assert list(zip(agree.model_a, agree.model_b)) == [tuple(MODELS)]
    row = agree.iloc[0]
    sc = ranks.pivot(index="persona", columns="model", values="score")
    if sc[MODELS[0]].nunique() > 1 and sc[MODELS[1]].nunique() > 1:
        from workbench.stats import spearman

        assert row.rho == pytest.approx(spearman(sc[MODELS[0]], sc[MODELS[1]], seed=0).value)
    else:  # tiny random models never refuse: a constant effect, and rho is undefined with the reason given
        assert math.isnan(row.rho) and "constant" in row.note


def test_caa_comparison_equals_each_models_step(png_run):
    res = png_run / "results"
    df = pd.read_csv(res / "compare-caa__caa_sycophancy_by_model.csv")
    curves = pd.read_csv(res / "compare-caa__caa_sycophancy_effect_by_depth.csv")
    assert list(df.model) == MODELS
    for n in MODELS:
        met = _metrics(png_run, "caa-sweep", n)
        r = df.set_index("model").loc[n]
        L = met["sycophancy: selected layer"]
        best = pd.read_csv(_step(png_run, "caa-sweep", n) / "caa_best_layer.csv")
        assert r["selected layer"] == L == best.layer.iloc[0] and r["depth"] == pytest.approx(L / (r["n layers"] - 1))
        _same(_est(df, n, "steering: p(matching) x+1 - x-1"), met["sycophancy: effect x1 - x-1"])
        _same(_est(df, n, "random control: x+1 - x-1"), met["sycophancy: random-control effect"])
        # the effect at every candidate layer, by depth; at the selected layer it is the headline effect
        mine = curves[curves.model == n].set_index("layer")
        assert list(mine.index) == [0, 1] and np.allclose(mine.depth, mine.index / (mine.n_layers - 1))
        _same((mine.loc[L, "value"], mine.loc[L, "ci_low"], mine.loc[L, "ci_high"]),
              met["sycophancy: effect x1 - x-1"])


def test_persona_rankings_are_each_models_shifts(png_run):
    ranks = pd.read_csv(png_run / "results" / "compare-personas__persona_rankings.csv")
    for n in MODELS:
        comp = pd.read_csv(_step(png_run, "personas", n) / "persona_comparison.csv")
        for method, label in (("prompt", "by prompt"), ("steer", "by steering")):
            st = comp[(comp.method == method) & (comp.scorer == "statements")].set_index("persona")["shift"]
            got = ranks[(ranks.measure == f"{label} / statements") & (ranks.model == n)].set_index("persona")
            assert np.allclose(got.loc[st.index, "score"], st)


def test_persona_non_grata_resume_reuses_every_step_and_shard(png_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(png_run, out)
    stamp = {p.relative_to(out): p.stat().st_mtime_ns
             for p in list((out / "steps").glob("*/_done.json")) + list((out / "shards").rglob("shard-*"))}
    _png(out, resume=True)
    assert {p: (out / p).stat().st_mtime_ns for p in stamp} == stamp
    log = (out / "log.txt").read_text().split("resuming persona-non-grata")[1]
    assert "grid studies: 2/2 units done already" in log and "grid persona-asr-cells: 12/12 shards done" in log
    assert all(f"step {c}: done already, reusing" in log
               for c in ("compare-personas", "compare-attack-success", "compare-caa"))
    assert "running" not in log.replace(" running,", "")  # no step ran (grid progress lines say "0 running,")
    assert result_files(out) == result_files(png_run)


# -- induction-signatures --------------------------------------------------------------------------------


def test_induction_signatures_two_models(ind_run):
    m = json.loads((ind_run / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["steps"] == [f"{s}@{n}" for n in MODELS for s in ("induction-heads", "induction-protocol")] + \
        ["induction-model-heads", "induction-model-protocol", "compare-induction", "compare-protocol"]
    # the shipped model once, whatever the models compared; its steps depend on its weights alone
    deps = json.loads((ind_run / "steps" / "induction-model-heads" / "_done.json").read_text())["deps"]
    assert len(deps["models"]) == 1 and "induction-2l" in next(iter(deps["models"]))


def test_induction_comparisons_equal_each_models_step(ind_run):
    from workbench.stats import bootstrap

    res = ind_run / "results"
    ind = pd.read_csv(res / "compare-induction__induction_by_model.csv").set_index("model")
    prot = pd.read_csv(res / "compare-protocol__protocol_by_model.csv")
    assert list(prot.model) == MODELS
    for n in MODELS:
        heads = pd.read_csv(_step(ind_run, "induction-heads", n) / "induction_heads.csv")
        top = heads[heads.set == "top"].logprob_drop_per_token.to_numpy()
        rnd = heads[heads.set == "random"].logprob_drop_per_token.to_numpy()
        assert ind.loc[n, "top heads: copying log p drop"] == pytest.approx(bootstrap(top, seed=0).value)
        assert ind.loc[n, "targeted - random"] == pytest.approx(top.mean() - rnd.mean())
        met = _metrics(ind_run, "induction-protocol", n)
        for col, key in (("loss increase, targeted", "loss increase, targeted"),
                         ("loss increase, random", "loss increase, random (mean of sets)"),
                         ("loss: targeted - random", "targeted - random"),
                         ("copying log p: targeted - random", "copying log p, targeted - random")):
            _same(_est(prot, n, col), met[key])
        sets = pd.read_csv(_step(ind_run, "induction-protocol", n) / "induction_protocol.csv").set_index("set")
        r = prot.set_index("model").loc[n]
        assert r["heads ablated"] == len(sets.loc["targeted", "heads"].split(","))
        assert r["random sets"] == len(sets) - 1 == 3 and r["layers"] == 2


def test_induction_signatures_resume_reuses_every_step(ind_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(ind_run, out)
    before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")}
    _ind(out, resume=True)
    assert {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")} == before
    log = (out / "log.txt").read_text().split("resuming induction-signatures")[1]
    assert "grid studies: 4/4 units done already" in log and "step compare-protocol: done already, reusing" in log
    assert result_files(out) == result_files(ind_run)


# -- one model: today's steps -------------------------------------------------------------------------------


def test_one_model_keeps_the_step_names(tmp_path):
    _ind(tmp_path / "ind", models=[MODELS[0]], overrides=["shipped_model.enabled=false"])
    m = json.loads((tmp_path / "ind" / "manifest.json").read_text())
    assert m["steps"] == ["induction-heads", "induction-protocol"]
    (sec,) = json.loads((tmp_path / "ind" / "steps" / "induction-heads" / "_sections.json").read_text())
    assert sec["title"] == "Induction heads: detector score vs single-head ablation"
    run_experiment("persona-non-grata", out=tmp_path / "png", preset="quick", models=[MODELS[0]], progress=False,
                   overrides=PNG + ['attack_success.personas=["psychopathy"]', "personas.enabled=false"])
    m = json.loads((tmp_path / "png" / "manifest.json").read_text())
    assert m["steps"] == ["persona-asr", "caa-sweep"]
