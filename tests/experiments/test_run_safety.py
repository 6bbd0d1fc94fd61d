"""Run directories never lose or fake work; every user error from the CLI is one line.

Each test here reproduces a finding of the fresh-install report (issue 14) that passed silently before.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from experiments.config import ConfigError, ModelSection
from experiments.registry import experiment
from experiments.report import ReportError, write_report
from experiments.run import RunContext, RunDirectoryError, RunExistsError, Section


@dataclass
class _Cfg:
    model: ModelSection = field(default_factory=lambda: ModelSection(name="tiny-llama", device="cpu"))
    seed: int = 0
    n_items: int = 3


def _experiment(ctx: RunContext, cfg: _Cfg, calls: list) -> None:
    import pandas as pd

    m = ctx.model()

    def first(w):
        calls.append("first")
        logits = m.forward("hello there")
        df = pd.DataFrame({"seed": [cfg.seed] * cfg.n_items, "logit": [float(logits[0, -1, i]) for i in range(cfg.n_items)]})
        w.section(Section("first", tables=[w.table("t", df)]))
        return {"sum": float(df["logit"].sum())}
    ctx.step("first", first)


def _run(out: Path, cfg: _Cfg, calls: list, **kw) -> RunContext:
    ctx = RunContext(out, "safety", cfg, progress=False, **kw)
    _experiment(ctx, cfg, calls)
    ctx.finish()
    return ctx


def _log(out: Path) -> str:
    return (out / "log.txt").read_text()


def test_overwrite_refuses_a_directory_that_holds_no_run(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    for kw in ({"overwrite": True}, {"resume": True}, {}):
        with pytest.raises(RunDirectoryError, match="holds no workbench run"):
            RunContext(out, "safety", _Cfg(), progress=False, **kw)
    assert (out / "thesis.tex").read_text() == "years of work"
    calls: list = []
    _run(tmp_path / "run", _Cfg(), calls)
    _run(tmp_path / "run", _Cfg(), calls, overwrite=True)  # a run directory is replaced
    assert calls == ["first", "first"]


def test_resume_recomputes_a_step_after_the_weights_changed(tmp_path):
    from transformers import AutoModelForCausalLM

    from workbench.models import load

    src = load("tiny-llama", backend="nnsight", check=False).source
    mdir = tmp_path / "model"
    hf = AutoModelForCausalLM.from_pretrained(src)
    hf.save_pretrained(mdir)
    for f in Path(src).glob("tokenizer*"):
        (mdir / f.name).write_bytes(f.read_bytes())
    (mdir / "special_tokens_map.json").write_bytes((Path(src) / "special_tokens_map.json").read_bytes()) \
        if (Path(src) / "special_tokens_map.json").exists() else None
    cfg = _Cfg(model=ModelSection(name=str(mdir), device="cpu"))
    out, calls = tmp_path / "run", []
    _run(out, cfg, calls)
    first_hash = json.loads((out / "manifest.json").read_text())["model"]["weights_hash"]
    _run(out, cfg, calls, resume=True)
    assert calls == ["first"] and "reusing" in _log(out)  # unchanged inputs: reused
    with torch.no_grad():
        hf.model.norm.weight.mul_(3.0)
    hf.save_pretrained(mdir)
    _run(out, cfg, calls, resume=True)
    assert calls == ["first", "first"]
    assert "model" in _log(out) and "weights changed" in _log(out)
    rec = json.loads((out / "steps" / "first" / "_done.json").read_text())
    assert list(rec["deps"]["models"].values()) != [first_hash]


def test_a_deleted_manifest_does_not_let_changed_config_reuse_steps(tmp_path):
    out, calls = tmp_path / "run", []
    _run(out, _Cfg(), calls)
    (out / "manifest.json").unlink()
    _run(out, _Cfg(seed=5, n_items=2), calls, resume=True)
    assert calls == ["first", "first"]
    assert "manifest.json is missing" in _log(out) and "config changed" in _log(out)
    csv = (out / "steps" / "first" / "t.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[1].startswith("5,")


def test_changed_package_versions_recompute_steps(tmp_path, monkeypatch):
    import experiments.run as run_mod

    out, calls = tmp_path / "run", []
    _run(out, _Cfg(), calls)
    real = run_mod.locked_versions()
    monkeypatch.setattr(run_mod, "locked_versions", lambda: {**real, "transformers": "9.99.0"})
    _run(out, _Cfg(), calls, resume=True)
    assert calls == ["first", "first"] and "transformers" in _log(out) and "9.99.0" in _log(out)


@pytest.mark.parametrize("damage", ["truncated done-file", "deleted table", "truncated table", "corrupt manifest"])
def test_damaged_run_files_are_named_and_recomputed(tmp_path, damage):
    out, calls = tmp_path / "run", []
    _run(out, _Cfg(), calls)
    d = out / "steps" / "first"
    target = {"truncated done-file": d / "_done.json", "deleted table": d / "t.csv",
              "truncated table": d / "t.parquet", "corrupt manifest": out / "manifest.json"}[damage]
    if damage == "deleted table":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    _run(out, _Cfg(), calls, resume=True)
    log = _log(out)
    if damage == "corrupt manifest":
        assert "manifest.json is unreadable" in log and calls == ["first"]  # the step itself was intact
    else:
        assert calls == ["first", "first"] and (target.name in log or "unreadable" in log)
    assert (d / "t.csv").exists() and json.loads((d / "_done.json").read_text())["payload"]["sum"]


def test_corrupt_grid_shards_are_recomputed(tmp_path):
    from experiments.tasks import residual_norm_task

    cfg = _Cfg()
    ctx = RunContext(tmp_path / "run", "safety", cfg, progress=False)
    tasks = [{"model": "tiny-llama", "layer": L, "prompts": ["hi there"], "device": "cpu"} for L in (0, 1)]
    first = ctx.map("norms", residual_norm_task, tasks)
    shard = next((tmp_path / "run" / "shards" / "norms").glob("shard-000001.json"))
    shard.write_text(shard.read_text()[:10])
    ctx.finish()
    ctx = RunContext(tmp_path / "run", "safety", cfg, progress=False, resume=True)
    assert ctx.map("norms", residual_norm_task, tasks) == first
    assert "corrupt" in _log(tmp_path / "run") and "shard-000001" in _log(tmp_path / "run")


def test_a_failed_model_load_leaves_no_run_behind(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "smoke", "--model", str(tmp_path / "no-such-model"), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("workbench: error:") and "no such file" in err[0]
    assert not out.exists()


def test_stale_partial_folders_are_cleaned(tmp_path):
    out, calls = tmp_path / "run", []
    _run(out, _Cfg(), calls)
    stale = out / "steps" / ".first.partial-999999999"
    stale.mkdir()
    (stale / "half.csv").write_text("a")
    _run(out, _Cfg(), calls, resume=True)
    assert not stale.exists() and "interrupted run" in _log(out)


def test_reports_read_only_their_own_run_directory(tmp_path):
    out, calls = tmp_path / "run", []
    _run(out, _Cfg(), calls)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG private")
    sec = json.loads((out / "steps" / "first" / "_sections.json").read_text())
    sec[0]["figures"] = ["../../../secret.png"]
    (out / "steps" / "first" / "_sections.json").write_text(json.dumps(sec))
    with pytest.raises(ReportError, match="outside its run directory"):
        write_report(out)
    m = json.loads((out / "manifest.json").read_text())
    sec[0]["figures"] = []
    (out / "steps" / "first" / "_sections.json").write_text(json.dumps(sec))
    m["steps"] = ["../../.."]
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ReportError, match="not a step of this run"):
        write_report(out)
    m["steps"] = ["first/../../../.."]  # made a slug inside steps/: nothing outside is read
    (out / "manifest.json").write_text(json.dumps(m))
    assert "private" not in write_report(out).read_text()


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out, calls = tmp_path / "run", []
        _run(out, _Cfg(), calls)
        for f in (out / "manifest.json", out / "steps" / "first" / "t.csv", out / "report.html"):
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
        os.umask(0o077)
        _run(tmp_path / "run2", _Cfg(), calls)
        assert stat.S_IMODE((tmp_path / "run2" / "manifest.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_negative_counts_in_configs_are_refused(capsys):
    with pytest.raises(ConfigError, match="n_ab_items = -1: a count must be >= 1"):
        from experiments.config import load_config
        from experiments.registry import get_experiment

        load_config(get_experiment("smoke").config_cls, None, ["n_ab_items=-1"])
    assert main(["run", "smoke", "--set", "n_ab_items=0", "--quiet", "--out", "/nonexistent/x"]) == 2
    assert "a count must be >= 1" in capsys.readouterr().err


def _cli_error(capsys, argv, env=None, monkeypatch=None):
    if env and monkeypatch:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("workbench: error: "), err
    return err[0]


def test_cli_user_errors_are_one_line(tmp_path, capsys, monkeypatch):
    q = ["--quiet", "--out", str(tmp_path / "r")]
    assert "unknown experiment" in _cli_error(capsys, ["config", "nope"])
    assert "not a run directory" in _cli_error(capsys, ["report", str(tmp_path)])
    assert "unknown model" in _cli_error(capsys, ["run", "smoke", "--model", "smolm2"] + q)
    assert "hub cannot be reached" in _cli_error(capsys, ["run", "smoke", "--model", "nobody/nothing"] + q,
                                                 {"HF_HUB_OFFLINE": "1"}, monkeypatch)
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert "corrupt" in _cli_error(capsys, ["run", "smoke", "--model", str(bad)] + q)
    if not torch.cuda.is_available():
        assert "CUDA is not available" in _cli_error(capsys, ["run", "smoke", "--device", "cuda"] + q)
    f = tmp_path / "a-file"
    f.write_text("x")
    assert "is a file" in _cli_error(capsys, ["run", "smoke", "--out", str(f), "--quiet"])
    cfg = tmp_path / "c.toml"
    cfg.write_text("n_ab_items = [")
    assert "not valid TOML" in _cli_error(capsys, ["run", "smoke", "--config", str(cfg)] + q)
    assert "unknown key" in _cli_error(capsys, ["run", "smoke", "--set", "n_ab_itemz=3"] + q)
    pytest.importorskip("ray")
    t = time.time()
    assert "cannot reach the Ray cluster" in _cli_error(
        capsys, ["run", "smoke", "--executor", "ray", "--ray-address", "127.0.0.1:9"] + q)
    assert time.time() - t < 30
    assert not (tmp_path / "r").exists()
