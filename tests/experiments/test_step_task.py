"""``experiments.tasks.step_task``: a step's writer run in a worker writes the same files as the same writer run by
``RunContext.step`` in the driver, and ``RunContext.units`` commits it with the deps of every model it read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch

from experiments.config import ModelSection
from experiments.run import RunContext


@dataclass
class Cfg:
    model: ModelSection = field(default_factory=lambda: ModelSection(name="tiny-llama"))
    seed: int = 3
    prompts: list[str] = field(default_factory=lambda: ["The cat sat", "On the mat"])


def writer(ctx, cfg, w, other: str) -> dict:
    """Reads two models and the global torch RNG (seeded per step), writes a table and a section."""
    import pandas as pd

    from experiments.writer import Section

    a, b = ctx.model(), ctx.model(other)
    ctx.record_data("prompts", cfg.prompts)
    la = a(cfg.prompts, logits="last")[:, :4].float()
    lb = b(cfg.prompts, logits="last")[:, :4].float()
    noise = torch.randn(2).tolist()
    t = w.table("logits", pd.DataFrame({"a": la.flatten().tolist(), "b": lb.flatten().tolist()}))
    w.section(Section("step task", f"noise {noise}", tables=[t]))
    return {"noise": noise, "sum_a": float(la.sum()), "models": [a.name, b.name]}


def _task(cfg: Cfg, out) -> dict:
    sec = cfg.model
    return {"writer": f"{__name__}:writer", "config": asdict(cfg), "config_class": f"{__name__}:Cfg",
            "model": "tiny-gpt2", "models": ["tiny-llama", "tiny-gpt2"], "default_model": "tiny-llama",
            "backend": sec.backend, "device": sec.device, "dtype": sec.dtype, "seed": cfg.seed, "threads": 1,
            "step": "two-models", "kwargs": {"other": "tiny-gpt2"}, "unload": ["tiny-gpt2"], "_out": str(out)}


def test_step_task_writes_what_the_driver_writes_and_records_every_model(tmp_path):
    import experiments.tasks as tasks

    cfg = Cfg()
    serial = RunContext(tmp_path / "serial", "step-task", cfg, progress=False)

    def run(w):
        torch.manual_seed(cfg.seed)
        return writer(serial, cfg, w, other="tiny-gpt2")
    p1 = serial.step("two-models", run)
    serial.finish()

    tasks.release_models()
    torch.manual_seed(12345)  # whatever ran before in the worker does not matter
    units = RunContext(tmp_path / "units", "step-task", cfg, progress=False)
    (p2,) = units.units("g", tasks.step_task, [("two-models", _task(cfg, tmp_path / "units"))])
    units.finish()
    assert p1 == p2 and p1["models"] == ["tiny-llama", "tiny-gpt2"]
    assert not any(k[0] == "tiny-gpt2" for k in tasks._MODELS)  # unloaded after the step, as the task asked
    d1, d2 = (json.loads((tmp_path / r / "steps" / "two-models" / "_done.json").read_text()) for r in ("serial", "units"))
    assert d1["files"] == d2["files"] and set(d1["files"]) >= {"logits.csv", "logits.parquet", "_sections.json"}
    assert set(d2["deps"]["models"]) == {"tiny-llama@tl", "tiny-gpt2@tl"} == set(d1["deps"]["models"])
    assert d1["deps"]["models"] == d2["deps"]["models"]
    m1, m2 = (json.loads((tmp_path / r / "manifest.json").read_text()) for r in ("serial", "units"))
    assert m1["data_hashes"] == m2["data_hashes"] and "prompts" in m1["data_hashes"]
    assert set(m2["models"]) == {"tiny-llama", "tiny-gpt2"}

    # resume: the unit is reused (weights checked by model-info tasks), nothing recomputed
    again = RunContext(tmp_path / "units", "step-task", cfg, progress=False, resume=True)
    assert again.units("g", tasks.step_task, [("two-models", _task(cfg, tmp_path / "units"))]) == [p2]
    assert "step two-models: done already, reusing" in (tmp_path / "units" / "log.txt").read_text()
    tasks.release_models()
