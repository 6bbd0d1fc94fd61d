"""A study as a grid of tasks: ``preference-dimensions`` on two tiny models (tiny-llama, tiny-neox).

Collection tasks per (model, split, dimension) write activations into the activation store; probe tasks per
(model, split, dimension, layer) read them; a final unit per (model, split) merges the layers and runs the
cross-check. Checked here: the grid's layers equal a one-call sweep on the same stored activations; a resume
reuses every shard (file times unchanged); a truncated shard and a changed activation file are recomputed, not
trusted, and the tables come out identical; a SIGKILLed driver resumes without recomputing finished shards; a
local Ray with 2 worker processes writes the same tables byte for byte (slow). Then eval-awareness with two models,
and `RunContext.grid` itself: a failed task stops nothing else and is the only one rerun on resume; a model whose
weights changed has its shards recomputed, the other model's reused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments import run_experiment
from tests.experiments.grid_files import result_files, shard_mtimes


def csv_files(out: Path) -> dict[str, bytes]:
    return result_files(out, "*.csv")

REPO = Path(__file__).resolve().parents[2]
MODELS = ["tiny-llama", "tiny-neox"]
SETS = ["preference.n_resamples=50", 'preference.layers=["all"]']


def _run(out: Path, **kw):
    return run_experiment("preference-dimensions", out=out, preset="quick", overrides=SETS, models=MODELS,
                          progress=False, **kw)




@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "local"
    _run(out)
    return out


def test_grid_layout_and_tables(local_run):
    m = json.loads((local_run / "manifest.json").read_text())
    assert m["status"] == "complete"
    assert m["steps"] == ["preference-easy@tiny-llama", "preference-easy@tiny-neox", "compare-preference-easy"]
    sh = shard_mtimes(local_run)
    # 2 models x 2 dimensions collected; probes only where a dimension has enough records (the rest are named)
    assert sum("preference-collect" in k for k in sh) == 4
    colls = [json.loads((local_run / k).read_text())["result"] for k in sh if "preference-collect" in k]
    kept = [c for c in colls if c["file"]]
    assert kept and all(c["notes"] for c in colls if not c["file"])
    assert sum("preference-probe" in k for k in sh) == sum(len(c["layers"]) for c in kept)
    for c in kept:  # the activation store is in the run directory, one file per (model, split, dimension)
        assert (local_run / "activations" / c["file"]).is_file()
    res = local_run / "results"
    for n in MODELS:
        layers = (res / f"preference-easy-{n}__preference_layers.csv").read_text()
        assert "label_shuffle" in layers and "random_direction" in layers
    comp = (res / "compare-preference-easy__harmlessness_auroc_by_depth.csv").read_text().splitlines()
    assert comp[0].startswith("model,layer,n_layers,depth,value,ci_low,ci_high")
    assert {r.split(",")[0] for r in comp[1:]} == set(MODELS)


def test_grid_layers_equal_one_sweep_on_the_stored_activations(local_run):
    """The merged per-layer tasks reproduce :func:`layer_sweep` over every layer of the same stored file."""
    from probe.activations import Activations
    from probe.preference import preference_sweep_kwargs
    from probe.sweep import layer_sweep

    sh = shard_mtimes(local_run)
    coll = next(json.loads((local_run / k).read_text())["result"] for k in sh if "preference-collect/tiny-llama" in k
                and json.loads((local_run / k).read_text())["result"]["file"])
    whole = layer_sweep(Activations.load(local_run / "activations" / coll["file"]), **preference_sweep_kwargs("easy", n_resamples=50))
    import pandas as pd

    got = pd.read_csv(local_run / "results" / "preference-easy-tiny-llama__preference_layers.csv")
    want = whole.to_dataframe()
    key = ["layer", "method", "condition", "metric"]
    merged = got[got.dimension == "harmlessness"].merge(want, on=key, suffixes=("_grid", "_one"))
    assert len(merged) == len(want) > 0
    np.testing.assert_allclose(merged.value_grid, merged.value_one, atol=2e-3)


def test_resume_reuses_every_shard_and_step(local_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(local_run, out)
    before = shard_mtimes(out)
    _run(out, resume=True)
    assert shard_mtimes(out) == before
    log = (out / "log.txt").read_text()
    assert "grid preference-collect: 4/4 shards done already" in log
    assert "grid preference: 2/2 units done already" in log
    assert csv_files(out) == csv_files(local_run)


def test_corrupt_shard_and_changed_activation_file_are_recomputed(local_run, tmp_path):
    out = tmp_path / "corrupt"
    shutil.copytree(local_run, out)
    probe = sorted((out / "shards" / "preference-probe").rglob("shard-*.json"))[0]
    probe.write_bytes(probe.read_bytes()[:100])  # a partial shard
    act = sorted((out / "activations").glob("*.safetensors"))[0]
    b = bytearray(act.read_bytes())
    b[-8:] = b"\x00" * 8  # the same size, other numbers: only the sha256 shows it
    act.write_bytes(bytes(b))
    before = shard_mtimes(out)
    for st in (out / "steps").iterdir():  # the steps are recomputed from the (recomputed) shards
        shutil.rmtree(st)
    _run(out, resume=True)
    log = (out / "log.txt").read_text()
    assert f"shard {probe} is corrupt" in log
    assert "was changed or truncated (sha256 differs); deleted" in log
    after = shard_mtimes(out)
    changed = {k for k in before if after[k] != before[k]}
    # the broken probe shard, the collection whose file changed, and that file's probe shards; nothing else
    assert str(probe.relative_to(out)) in changed
    assert sum("preference-collect" in k for k in changed) == 1
    assert len(changed) < len(before)
    assert csv_files(out) == csv_files(local_run)


def test_killed_driver_resumes_without_recomputing_finished_shards(local_run, tmp_path):
    """The driver SIGKILLed once its first collection shard is written: ``--resume`` keeps every shard it had
    written (file times unchanged) and the tables equal the uninterrupted run's."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "experiments", "run", "preference-dimensions", "--preset", "quick", "--out", str(out),
           "--quiet"] + [a for n in MODELS for a in ("--model", n)] + [a for s in SETS for a in ("--set", s)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while not list((out / "shards").rglob("shard-*.json")) if (out / "shards").is_dir() else True:
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = shard_mtimes(out)
    assert before and json.loads((out / "manifest.json").read_text())["status"] == "running"
    _run(out, resume=True)
    after = shard_mtimes(out)
    assert all(after[k] == t for k, t in before.items())  # finished shards reused, not recomputed
    assert len(after) > len(before)
    assert f"{len([k for k in before if 'preference-collect' in k])}/4 shards done already" in \
        (out / "log.txt").read_text()
    assert csv_files(out) == csv_files(local_run)


@pytest.mark.slow
def test_ray_two_workers_equal_local(local_run, tmp_path):
    """A local Ray with 2 worker processes (probe tasks spread over both; model tasks on a worker per model):
    every table byte-identical to the local executor's."""
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    _run(out, executor="ray", ray_cpus=2)
    assert csv_files(out) == csv_files(local_run)
    assert shard_mtimes(out).keys() == shard_mtimes(local_run).keys()


# -- several models in the probe experiments ------------------------------------------------------------------


def test_eval_awareness_takes_several_models_and_compares_them_by_depth(tmp_path):
    """One step per model, and ``compare-probe`` built from them: its AUROC per layer is each model's own probe
    table's (main condition, logistic), the layer also given as a fraction of depth."""
    import pandas as pd

    out = tmp_path / "ea"
    run_experiment("eval-awareness", out=out, preset="quick", models=MODELS, progress=False,
                   overrides=["nguyen.enabled=false", "eval_awareness.n_topics=4", "eval_awareness.n_harmful=4",
                              "eval_awareness.n_resamples=50", 'eval_awareness.layers=["all"]'])
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"] == ["eval-awareness@tiny-llama", "eval-awareness@tiny-neox", "compare-probe"]
    assert set(m["models"]) == set(MODELS)
    comp = pd.read_csv(out / "results" / "compare-probe__probe_auroc_by_depth.csv")
    for n in MODELS:
        own = pd.read_csv(out / "results" / f"eval-awareness-{n}__probe_layers.csv")
        mine = comp[comp.model == n].sort_values("layer")
        assert list(mine.depth) == [L / (len(mine) - 1) for L in mine.layer]
        assert len(mine) == len(own) == 2
        main = own.sort_values("layer")["main"].str.extract(r"([\d.]+) \[([\d.]+), ([\d.]+)\]").astype(float)
        np.testing.assert_allclose(mine[["value", "ci_low", "ci_high"]].to_numpy(), main.to_numpy(), atol=5e-4)


# -- RunContext.grid itself ---------------------------------------------------------------------------------------

CALLS: list[tuple[str, int]] = []
FAIL: set[tuple[str, int]] = set()


def _square(task: dict) -> dict:
    """A grid task (module-level): counts its calls, fails where FAIL says."""
    CALLS.append((task["model"], task["x"]))
    if (task["model"], task["x"]) in FAIL:
        raise RuntimeError(f"planted failure at {task['x']}")
    return {"y": task["x"] ** 2}


def test_grid_failures_resume_and_a_changed_model_recompute_only_their_shards(tmp_path, monkeypatch):
    from dataclasses import dataclass, field

    import experiments.tasks as tasks
    from experiments.config import ModelSection
    from experiments.run import RunContext

    @dataclass
    class Cfg:
        model: ModelSection = field(default_factory=lambda: ModelSection(models=list(MODELS)))
        seed: int = 0

    grid = [{"model": n, "x": x} for n in MODELS for x in range(4)]
    out = tmp_path / "g"
    CALLS.clear()
    FAIL.clear()
    FAIL.add(("tiny-neox", 2))
    ctx = RunContext(out, "test-grid", Cfg(), progress=False)
    with pytest.raises(RuntimeError, match="planted failure at 2"):
        ctx.grid("squares", _square, grid, keyed=False)
    assert len(CALLS) == 8 and len(shard_mtimes(out)) == 7  # the failure stopped nothing else
    ctx.fail(RuntimeError("x"))

    CALLS.clear()
    FAIL.clear()
    ctx = RunContext(out, "test-grid", Cfg(), progress=False, resume=True)
    assert ctx.grid("squares", _square, grid, keyed=False) == [{"y": t["x"] ** 2} for t in grid]
    assert CALLS == [("tiny-neox", 2)]  # only the failed task ran again
    ctx.finish()

    real = tasks.model_info  # other weights for tiny-neox: its shards are recomputed, tiny-llama's reused

    def info(m):
        d = real(m)
        return {**d, "weights_hash": "0" * 16} if d["name"] == "tiny-neox" else d
    monkeypatch.setattr(tasks, "model_info", info)
    CALLS.clear()
    before = shard_mtimes(out)
    ctx = RunContext(out, "test-grid", Cfg(), progress=False, resume=True)
    ctx.grid("squares", _square, grid, keyed=False)
    assert sorted(CALLS) == [("tiny-neox", x) for x in range(4)]
    after = shard_mtimes(out)
    assert all(after[k] == t for k, t in before.items() if "tiny-llama" in k)
    assert "the shards of tiny-neox were computed with other inputs" in (out / "log.txt").read_text()
