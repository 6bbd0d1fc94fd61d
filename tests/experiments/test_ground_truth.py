"""The ``ground-truth`` experiment: its config, presets and stated expectations (fast); the quick preset end to end on
the shipped organisms (slow)."""

from __future__ import annotations

import json

import pytest

from experiments.builtin.ground_truth import EXPECTATIONS, PRESETS, GroundTruthConfig, _organism_name
from experiments.config import config_to_dict, load_config
from experiments.registry import get_experiment


def test_config_presets_and_expectations():
    cfg = get_experiment("ground-truth").config(preset="quick")
    d = config_to_dict(cfg)
    flat = {f"{s}.{k}": v for s, sec in d.items() if isinstance(sec, dict) for k, v in sec.items()}
    flat.update({k: v for k, v in d.items() if not isinstance(v, dict)})
    for k, v in PRESETS["quick"].items():
        assert flat[k] == v, k
    # layers are declared as fractions of depth, never as layer numbers of one model
    d = GroundTruthConfig()
    for sec in (d.caa, d.eval_awareness, d.refusal):
        assert all(isinstance(x, float) and 0 < x < 1 for x in sec.layers)
    assert isinstance(d.personas.layer, float)
    assert set(EXPECTATIONS) == {"caa", "persona_vectors", "persona_prompt_vs_steer", "eval_awareness",
                                 "refusal_direction"}
    assert all(e["expected"] and e["rule"] for e in EXPECTATIONS.values())
    with pytest.raises(ValueError, match="has no preset 'slow'"):
        get_experiment("ground-truth").config(preset="slow")


def test_organisms_need_a_base_with_registered_organisms():
    from workbench.models import UnknownModelError

    cfg = load_config(GroundTruthConfig, None, ['model.name="tiny-llama"'])
    with pytest.raises(UnknownModelError, match="smollm2-135m-instruct\\+refusal"):
        _organism_name(cfg, "refusal")
    assert _organism_name(GroundTruthConfig(), "refusal") == "smollm2-135m-instruct+refusal"


def test_crosscheck_verdicts_map_inconclusive_to_inconclusive():
    """A rule needing a cross-check to agree is not decided by a cross-check that cannot decide (e.g. at quick size)."""
    from experiments.builtin.ground_truth import _crosscheck_verdict

    assert _crosscheck_verdict("agree") == "recovered"
    assert _crosscheck_verdict("disagree") == "not recovered"
    assert _crosscheck_verdict("inconclusive") == "inconclusive"


def test_unsteered_scores_are_computed_once_per_model_and_system_prompt():
    from types import SimpleNamespace

    from experiments.builtin.ground_truth import _UnsteeredOnce
    from steering.compare import Condition

    calls = []

    class Scorer:
        name = "count"

        def score(self, model, persona, condition):
            calls.append((model.name, persona, condition.method))
            return len(calls)

    sc = _UnsteeredOnce(Scorer())
    m1, m2 = SimpleNamespace(name="a", weights_hash="1"), SimpleNamespace(name="b", weights_hash="2")
    assert sc.score(m1, "up", Condition("baseline")) == sc.score(m1, "down", Condition("baseline")) == 1
    assert sc.score(m1, "up", Condition("prompt", system="be x")) == 2 == sc.score(m1, "down", Condition("prompt", system="be x"))
    assert sc.score(m2, "up", Condition("baseline")) == 3
    op = object()
    assert sc.score(m1, "up", Condition("steer", operators=(op,))) == 4
    assert sc.score(m1, "up", Condition("steer", operators=(op,))) == 5  # steered conditions are always scored
    assert sc.name == "count" and len(calls) == 5


@pytest.mark.slow
@pytest.mark.smollm
def test_quick_preset_end_to_end(tmp_path):
    """Every method gets a verdict, every organism a planted-behaviour section, and the manifest records each
    organism's adapter sha256."""
    from experiments import run_experiment
    from workbench.organisms import adapter_sha256

    out = tmp_path / "gt"
    report = run_experiment("ground-truth", out=out, preset="quick", overrides=['model.backend="nnsight"'],
                            progress=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete"
    for short in ("myopic-reward", "power-seeking", "power-averse", "eval-conditional", "refusal"):
        assert man["models"][f"smollm2-135m-instruct+{short}"]["source_hash"] == adapter_sha256(short)
    verdicts = json.loads((out / "steps" / "verdicts" / "_done.json").read_text())["payload"]["verdicts"]
    assert set(verdicts) == set(EXPECTATIONS)
    assert set(verdicts.values()) <= {"recovered", "not recovered", "inconclusive"}
    html = report.read_text()
    assert "ground truth: " in html and "Ground truth and expected results" in html


def test_plan_covers_every_step_once_and_two_workers_balance_the_persona_group():
    from experiments.builtin.ground_truth import _plan, _worker_of

    cfg = get_experiment("ground-truth").config(preset="quick")
    assert cfg.workers == 2
    plan = _plan(cfg)
    steps = [it["step"] for it in plan]
    assert steps == ["organism-myopic-reward", "caa", "organism-power-seeking", "organism-power-averse",
                     "persona-vectors", "organism-eval-conditional", "eval-awareness", "organism-refusal",
                     "refusal-direction"]  # the serial run's order (the report's)
    two = {it["step"]: _worker_of(it, 2) for it in plan}
    # the persona group (whose organisms share base-model measurements) in one worker, the rest in the other
    assert {s for s, w in two.items() if w == two["persona-vectors"]} == {
        "organism-power-seeking", "organism-power-averse", "persona-vectors"}
    assert len(set(two.values())) == 2
    assert len({_worker_of(it, 4) for it in plan}) == 4  # one worker per method with more room
    # every step names each model it reads (the deps of a step run as a unit)
    by = {it["step"]: it["models"] for it in plan}
    assert by["persona-vectors"] == ["smollm2-135m-instruct", "smollm2-135m-instruct+power-seeking",
                                     "smollm2-135m-instruct+power-averse"]
    assert by["caa"] == ["smollm2-135m-instruct+myopic-reward"]  # quick: caa.compare_base = false
    off = load_config(GroundTruthConfig, None, ["personas.enabled=false", 'organisms.names=["refusal"]'])
    assert [it["step"] for it in _plan(off)] == ["caa", "eval-awareness", "organism-refusal", "refusal-direction"]


@pytest.mark.slow
@pytest.mark.smollm
def test_two_workers_write_the_same_files_as_the_serial_run(tmp_path):
    """The method groups run side by side in two Ray workers (workers = 2) and write byte-identical step files
    (tables, figures, sections), payloads and data hashes to the serial run (workers = 1), at tiny sizes."""
    from experiments import run_experiment

    tiny = ["organisms.n_items=6", "organisms.n_perplexity=2", "organisms.max_new_tokens=4", "caa.n_build=6",
            "caa.n_select=4", "caa.n_test=6", "caa.layers=[0.5]", "personas.n_questions=1", "personas.n_pairs=1",
            "personas.max_new_tokens=4", "personas.n_statements=4", "personas.n_kl_prompts=2",
            "personas.compare_base=false", "eval_awareness.n_topics=4", "eval_awareness.n_harmful=6",
            "eval_awareness.layers=[0.5]", "eval_awareness.max_new_tokens=4", "refusal.n_method=6",
            "refusal.n_select=4", "refusal.n_test=6", "refusal.layers=[0.5]", "refusal.max_new_tokens=4"]
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        run_experiment("ground-truth", out=out, preset="quick", overrides=tiny + [f"workers={workers}"], progress=False)
        runs[workers] = out
    log = (runs[2] / "log.txt").read_text()
    assert "9 steps as units on the ray executor, 2 worker group(s)" in log
    m1, m2 = (json.loads((runs[w] / "manifest.json").read_text()) for w in (1, 2))
    assert m1["steps"] == m2["steps"] and len(m1["steps"]) == 11
    assert m1["data_hashes"] == m2["data_hashes"] and m1["models"] == m2["models"]
    for step in m1["steps"]:
        d1, d2 = (json.loads((runs[w] / "steps" / step / "_done.json").read_text()) for w in (1, 2))
        assert d1["payload"] == d2["payload"], step
        assert d1["files"] == d2["files"], step  # sha256 of every file
        for f in d1["files"]:
            assert (runs[1] / "steps" / step / f).read_bytes() == (runs[2] / "steps" / step / f).read_bytes()
