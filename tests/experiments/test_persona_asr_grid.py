"""The persona x coefficient sweep as a grid of tasks (``persona-non-grata``'s ``[attack_success]`` on tiny-llama).

A vector task per model writes every persona's vector into the vector store; a task per (persona, coefficient)
generates and scores the steered, random-control and unsteered completions; a final unit merges them. Checked here:
every table (CSV, JSON, parquet) and the payload of the grid equal the one-process study's byte for byte; a resume
reuses every shard (file times unchanged); a truncated cell shard and a changed vector file are recomputed, not
trusted, with identical tables; a local Ray with 2 workers writes the same tables (slow).
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
PERSONAS = ["psychopathy", "power_seeking"]
SETS = ["personas.enabled=false", "caa.enabled=false", f"attack_success.personas={json.dumps(PERSONAS)}",
        "attack_success.coefficients=[0.0, 2.0]", "attack_success.n_harmful=3", "attack_success.max_new_tokens=4",
        "attack_success.n_questions=2", "attack_success.n_pairs=1"]


def _run(out: Path, **kw):
    return run_experiment("persona-non-grata", out=out, preset="quick", overrides=SETS, models=[MODEL],
                          progress=False, **kw)




@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("asr-grid") / "local"
    _run(out)
    return out


def test_grid_tables_equal_the_one_process_study(local_run):
    from experiments.studies.persona_asr import PersonaASRStudy
    from experiments.tasks import study_task

    m = json.loads((local_run / "manifest.json").read_text())
    assert m["status"] == "complete" and m["steps"] == ["persona-asr"]
    sh = shard_mtimes(local_run)
    vec = next(json.loads((local_run / k).read_text())["result"] for k in sh if "persona-asr-vectors" in k)
    assert all((local_run / "vectors" / vec["dir"] / f).is_file() for f in vec["sha256"])
    assert sum("persona-asr-vectors" in k for k in sh) == 1 and sum("persona-asr-cells" in k for k in sh) == 2 * 2
    # the study in one process (no parts: every vector and sweep computed in one call each), written as a step
    cfg = PersonaASRStudy(personas=PERSONAS, coefficients=[0.0, 2.0], n_harmful=3, max_new_tokens=4, n_questions=2,
                          n_pairs=1)
    one = study_task({"study": "persona_asr", "config": asdict(cfg),
                      "config_class": "experiments.studies.persona_asr:PersonaASRStudy", "model": MODEL,
                      "backend": "tl", "device": "auto", "dtype": "float32", "seed": 0, "step": "persona-asr"})
    got = result_files(local_run)
    want = {f"persona-asr__{k}": b for k, b in one["files"].items()
            if not k.startswith("_") and not k.endswith((".png", ".pdf"))}
    assert {"persona-asr__persona_asr.csv", "persona-asr__persona_asr_crosscheck.json"} <= set(want)
    assert {k: got.get(k) for k in want} == want
    done = json.loads((local_run / "steps" / "persona-asr" / "_done.json").read_text())
    assert json.loads(json.dumps(one["payload"])) == done["payload"]


def test_resume_reuses_every_shard_and_step(local_run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(local_run, out)
    before = shard_mtimes(out)
    _run(out, resume=True)
    assert shard_mtimes(out) == before
    log = (out / "log.txt").read_text()
    assert "grid persona-asr-vectors: 1/1 shards done already" in log
    assert "grid persona-asr-cells: 4/4 shards done already" in log
    assert "grid persona-asr: 1/1 units done already" in log
    assert result_files(out) == result_files(local_run)


def test_truncated_shard_and_changed_vector_file_are_recomputed(local_run, tmp_path):
    out = tmp_path / "corrupt"
    shutil.copytree(local_run, out)
    cell = sorted((out / "shards" / "persona-asr-cells").rglob("shard-*.json"))[-1]
    cell.write_bytes(cell.read_bytes()[:100])  # a partial shard
    vec = sorted((out / "vectors").rglob("*.safetensors"))[0]
    b = bytearray(vec.read_bytes())
    b[-8:] = b"\x00" * 8  # the same size, other numbers: only the sha256 shows it
    vec.write_bytes(bytes(b))
    before = shard_mtimes(out)
    shutil.rmtree(out / "steps" / "persona-asr")  # the step is merged again from the (recomputed) shards
    _run(out, resume=True)
    log = (out / "log.txt").read_text()
    assert f"shard {cell} is corrupt" in log
    assert "changed or truncated (sha256 differs); deleted" in log
    after = shard_mtimes(out)
    changed = {k for k in before if after[k] != before[k]}
    assert str(cell.relative_to(out)) in changed
    assert sum("persona-asr-vectors" in k for k in changed) == 1
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
