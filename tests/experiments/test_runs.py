"""Run directories: contents, resume after SIGKILL, executors, the report in a real browser."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments import run_experiment
from experiments.run import RunExistsError

REPO = Path(__file__).resolve().parents[2]
FAST = ["model.name=\"tiny-llama\"", "n_ab_items=4", "n_refusal_prompts=2", "max_new_tokens=4",
        "grid_layers=[0, 1]"]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "clean"
    report = run_experiment("smoke", out=out, overrides=FAST, progress=False)
    return out, report


@pytest.mark.drift
def test_run_directory_contents(clean_run):
    out, report = clean_run
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["experiment"] == "smoke" and m["seed"] == 0
    assert m["model"]["name"] == "tiny-llama" and len(m["model"]["weights_hash"]) == 16
    assert {"torch", "transformers", "transformer-lens", "nnsight"} <= set(m["packages"])
    assert set(m["data_hashes"]) == {"caa/sycophancy", "caa/corrigible-neutral-HHH", "refusal_prompts"}
    assert m["steps"] == ["completions", "ab", "refusal", "norms"] and "ab" in m["timings"]
    for name in ("completions__completions", "ab__ab", "refusal__refusal", "norms__norms"):
        # round_trip: pandas' default fast float parser can be 1 ulp off what to_csv wrote
        csv = pd.read_csv(out / "results" / f"{name}.csv", float_precision="round_trip")
        assert csv.equals(pd.read_parquet(out / "results" / f"{name}.parquet"))
    assert (out / "figures" / "ab__ab.png").exists() and (out / "figures" / "ab__ab.pdf").exists()
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 2 and "A/B behaviour (CAA)" in html
    assert not list(out.rglob("*.partial*")) and not list(out.rglob(".*.tmp"))


def test_existing_run_needs_resume_or_overwrite(clean_run, tmp_path):
    out, _ = clean_run
    with pytest.raises(RunExistsError, match="--resume"):
        run_experiment("smoke", out=out, overrides=FAST, progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(RunExistsError, match="different experiment or config"):
        run_experiment("smoke", out=copy, overrides=FAST + ["seed=1"], resume=True, progress=False)


def _results(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((out / "results").glob("*.csv"))}


def test_sigkill_then_resume_equals_uninterrupted(clean_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "experiments", "run", "smoke", "--out", str(out), "--quiet"] + \
          [a for s in FAST for a in ("--set", s)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "steps" / "ab" / "_done.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in (out / "steps").glob("*/_done.json")}
    assert {"completions", "ab"} <= set(done_before) and "norms" not in done_before
    run_experiment("smoke", out=out, overrides=FAST, resume=True, progress=False)
    # finished steps were reused, not recomputed or rewritten
    for step, mtime in done_before.items():
        assert (out / "steps" / step / "_done.json").stat().st_mtime_ns == mtime
    log = (out / "log.txt").read_text()
    assert "step completions: done already, reusing" in log and log.count("step ab: running") == 1
    assert _results(out) == _results(clean_run[0])


def test_ray_executor_equals_local(clean_run, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    run_experiment("smoke", out=out, overrides=FAST, executor="ray", progress=False)
    assert _results(out)["norms__norms.csv"] == _results(clean_run[0])["norms__norms.csv"]
    shards = sorted((out / "shards" / "residual-norms").glob("shard-*.json"))
    local = sorted((clean_run[0] / "shards" / "residual-norms").glob("shard-*.json"))
    assert [json.loads(a.read_text()) for a in shards] == [json.loads(b.read_text()) for b in local]


def test_report_renders_in_headless_chromium(clean_run, tmp_path):
    from tests.experiments.chromium import images_in_chromium

    _, report = clean_run
    assert images_in_chromium(report, tmp_path) == (2, 0)
