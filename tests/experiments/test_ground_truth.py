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
    flat = {f"{s}.{k}": v for s, d in config_to_dict(cfg).items() if isinstance(d, dict) for k, v in d.items()}
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
