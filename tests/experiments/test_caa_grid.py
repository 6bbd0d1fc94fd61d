"""The CAA sweep as a grid of tasks (``persona-non-grata``'s ``[caa]`` on tiny-llama, two behaviours x every layer).

A vector task per behaviour writes the CAA vectors into the vector store; a task per (behaviour, layer) returns that
layer's multiplier cells, random control and selection effect; a final unit merges them. Checked here: every table
(CSV, JSON, parquet) of the grid is byte-identical to the one-process study's (``caa.compute`` without parts, written
the same way); a resume reuses every shard (file times unchanged); a truncated cell shard and a changed vector file are
recomputed, not trusted, with identical tables; a local Ray with 2 workers writes the same tables (slow).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from experiments import run_experiment
from tests.experiments.grid_files import result_files, shard_mtimes

MODEL = "tiny-llama"
BEHAVIOURS = ["sycophancy", "myopic-reward"]
SETS = ["personas.enabled=false", "attack_success.enabled=false", 'caa.layers=["all"]',
        f"caa.behaviours={json.dumps(BEHAVIOURS)}", "caa.multipliers=[-1.0, 0.0, 1.0]", "caa.n_build=8",
        "caa.n_select=4", "caa.n_test=6"]


def _run(out: Path, **kw):
    return run_experiment("persona-non-grata", out=out, preset="quick", overrides=SETS, models=[MODEL],
                          progress=False, **kw)




@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("caa-grid") / "local"
    _run(out)
    return out


def test_grid_tables_equal_the_one_process_study(local_run):
    from experiments.studies.caa import CAAStudy
    from experiments.tasks import study_task

    m = json.loads((local_run / "manifest.json").read_text())
    assert m["status"] == "complete" and m["steps"] == ["caa-sweep"]
    sh = shard_mtimes(local_run)
    vecs = [json.loads((local_run / k).read_text())["result"] for k in sh if "caa-vectors" in k]
    assert len(vecs) == 2 and all(v["layers"] == [0, 1] for v in vecs)
    for v in vecs:  # the vector store is in the run directory, one file pair per behaviour
        assert all((local_run / "vectors" / f"{v['file']}{s}").is_file() for s in (".safetensors", ".json"))
    assert sum("caa-cells" in k for k in sh) == 2 * 2
    # the study in one process (no parts: vectors and the whole sweep computed in one call), written as a step
    cfg = CAAStudy(behaviours=BEHAVIOURS, layers=["all"], multipliers=[-1.0, 0.0, 1.0], n_build=8, n_select=4,
                   n_test=6)
    one = study_task({"study": "caa", "config": asdict(cfg), "config_class": "experiments.studies.caa:CAAStudy",
                      "model": MODEL, "backend": "tl", "device": "auto", "dtype": "float32", "seed": 0,
                      "step": "caa-sweep"})
    got = result_files(local_run)
    want = {f"caa-sweep__{k}": b for k, b in one["files"].items()
            if not k.startswith("_") and not k.endswith((".png", ".pdf"))}
    assert {"caa-sweep__caa_best_layer.csv", "caa-sweep__caa_sweep.csv", "caa-sweep__caa_crosscheck.json"} <= set(want)
    assert {k: got.get(k) for k in want} == want
    done = json.loads((local_run / "steps" / "caa-sweep" / "_done.json").read_text())
    assert json.loads(json.dumps(one["payload"])) == done["payload"]


def test_resume_reuses_every_shard_and_step(local_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(local_run, out)
    before = shard_mtimes(out)
    _run(out, resume=True)
    assert shard_mtimes(out) == before
    log = (out / "log.txt").read_text()
    assert "grid caa-vectors: 2/2 shards done already" in log
    assert "grid caa-cells: 4/4 shards done already" in log
    assert "grid caa: 1/1 units done already" in log
    assert result_files(out) == result_files(local_run)


def test_truncated_shard_and_changed_vector_file_are_recomputed(local_run, tmp_path):
    out = tmp_path / "corrupt"
    shutil.copytree(local_run, out)
    cell = sorted((out / "shards" / "caa-cells").rglob("shard-*.json"))[-1]
    cell.write_bytes(cell.read_bytes()[:100])  # a partial shard
    vec = sorted((out / "vectors").glob("*.safetensors"))[0]
    b = bytearray(vec.read_bytes())
    b[-8:] = b"\x00" * 8  # the same size, other numbers: only the sha256 shows it
    vec.write_bytes(bytes(b))
    before = shard_mtimes(out)
    shutil.rmtree(out / "steps" / "caa-sweep")  # the step is merged again from the (recomputed) shards
    _run(out, resume=True)
    log = (out / "log.txt").read_text()
    assert f"shard {cell} is corrupt" in log
    assert "was changed or truncated (sha256 differs); deleted" in log
    after = shard_mtimes(out)
    changed = {k for k in before if after[k] != before[k]}
    assert str(cell.relative_to(out)) in changed
    assert sum("caa-vectors" in k for k in changed) == 1  # the changed file's behaviour only
    assert len(changed) < len(before)
    assert result_files(out) == result_files(local_run)


@pytest.mark.slow
def test_ray_two_workers_equal_local(local_run, tmp_path):
    """A local Ray with 2 worker processes: every table byte-identical to the local executor's."""
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    _run(out, executor="ray", ray_cpus=2)
    assert result_files(out) == result_files(local_run)
    assert shard_mtimes(out).keys() == shard_mtimes(local_run).keys()


def test_a_vector_store_outside_the_run_directory(local_run, tmp_path):
    """``vector_store = "<dir>"``: the vector tasks write there (a directory workers on several machines share), the
    run directory holds no vectors, and the tables are the same as with the default store."""
    store = tmp_path / "shared-vectors"
    out = tmp_path / "run"
    run_experiment("persona-non-grata", out=out, preset="quick", overrides=[*SETS, f'vector_store="{store}"'],
                   models=[MODEL], progress=False)
    assert not (out / "vectors").exists()
    assert len(list(store.glob("*.safetensors"))) == 2  # one per behaviour
    assert result_files(out, "*.csv") == result_files(local_run, "*.csv")
