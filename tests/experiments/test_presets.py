"""Presets, one default per study parameter, and documented configs.

The reference for the built-in experiments' defaults is the configs they had before the studies got one
home each (hand-copied below): on a 30-layer model the defaults and presets must resolve to the same
settings, so the main job and the dedicated experiments compute what they computed before.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.config import ConfigError, ModelSection, field_docs, nest, to_toml
from experiments.registry import DEFAULTS_PRESET, experiment, get_experiment, list_experiments
from experiments.studies import STUDIES
from workbench.layers import resolve_layer, resolve_layers

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class _Sec:
    """Attributes:
        a: first.
        b: second, documented
            over two lines.
    """

    a: int = 1
    b: list[float] = dataclasses.field(default_factory=lambda: [0.5])


@dataclasses.dataclass
class _Cfg:
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    seed: int = 0
    sec: _Sec = dataclasses.field(default_factory=_Sec)


@experiment("test-presets-dummy", _Cfg, "a dummy for the preset tests",
            presets={"small": {"sec": {"a": 2, "b": [0.1]}}, "dotted": {"sec.a": 3, "seed": 4}},
            default_preset="small")
def _dummy(ctx, cfg):  # pragma: no cover - never run
    pass


def test_order_defaults_preset_file_overrides(tmp_path):
    exp = get_experiment("test-presets-dummy")
    assert exp.config().sec == _Sec(2, [0.1])                      # the default preset
    assert exp.config(preset=DEFAULTS_PRESET).sec == _Sec()        # the dataclass defaults
    assert exp.config(preset="dotted").sec.a == 3 and exp.config(preset="dotted").seed == 4
    f = tmp_path / "c.toml"
    f.write_text("[sec]\nb = [0.9]\n")
    c = exp.config(f, ["sec.a=7"], "small")                        # preset < file < overrides
    assert (c.sec.a, c.sec.b) == (7, [0.9])
    assert exp.config(f, [], "small").sec.a == 2                   # the file keeps the preset's other keys
    assert exp.presets["small"] == {"sec": {"a": 2, "b": [0.1]}}   # applying a preset never changes it


def test_bad_presets_are_named():
    exp = get_experiment("test-presets-dummy")
    with pytest.raises(ConfigError, match=r"has no preset 'smal'\. Did you mean 'small'\? Presets: defaults, dotted"):
        exp.config(preset="smal")
    bad = dataclasses.replace(exp, explicit_presets={"broken": {"sec": {"c": 1}}})
    with pytest.raises(ConfigError,
                       match=r"preset 'broken' of 'test-presets-dummy': unknown key 'c' in \[config.sec\]"):
        bad.config(preset="broken")
    assert nest({"a.b.c": 1, "a.b": {"d": 2}, "e": 3}) == {"a": {"b": {"c": 1, "d": 2}}, "e": 3}


def test_every_builtin_experiment_has_a_valid_quick_preset():
    names = {e.name for e in list_experiments()}
    assert {"cross-check", "eval-awareness", "persona-non-grata", "induction-signatures", "preference-dimensions",
            "smoke"} <= names
    for e in list_experiments():
        if e.name.startswith("test-"):
            continue
        assert "quick" in e.presets, e.name
        for p in e.presets:
            e.config(preset=p)  # validates
        # a preset only lowers sizes of the same parameters: it never adds a key the dataclass lacks (checked by
        # config()) and the dataclass defaults stay the one default of every parameter
        full = e.config(preset=DEFAULTS_PRESET)
        assert full == e.config_cls()


def _study_classes():
    import importlib

    for name in STUDIES:
        mod = importlib.import_module(f"experiments.studies.{name}")
        yield from (v for k, v in vars(mod).items() if k.endswith("Study") and dataclasses.is_dataclass(v))


def test_each_study_section_is_its_study_config_with_its_own_defaults():
    """No experiment re-declares a study parameter: every section of a built-in experiment whose type is a study
    config holds exactly that study's defaults when no preset applies."""
    studies = set(_study_classes())
    assert len(studies) == len(STUDIES)
    seen = set()
    for e in list_experiments():
        full = e.config(preset=DEFAULTS_PRESET)
        for f in dataclasses.fields(full):
            v = getattr(full, f.name)
            if type(v) in studies:
                seen.add(type(v))
                assert v == type(v)(), (e.name, f.name)
    assert seen == studies


def test_every_config_key_is_documented():
    for cls in _study_classes():
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in docs]
        assert not missing, (cls.__name__, missing)
    assert field_docs(_Sec) == {"a": "first.", "b": "second, documented over two lines."}
    text = to_toml(_Cfg())
    assert "[sec]\n# first.\na = 1\n# second, documented over two lines.\nb = [0.5]\n" in text


def test_defaults_and_presets_reproduce_the_previous_configs_on_30_layers():
    harmful_val = 39  # the shipped harmful_val split: every request is used whether n_harmful is 64 or 100
    from workbench import datasets

    assert len(datasets.harmful_instructions("harmful_val")) == harmful_val
    main = get_experiment("cross-check").config()  # the main job: preset "main"
    e = main.eval_awareness
    assert resolve_layers(30, e.layers) == list(range(0, 30, 3)) + [29]
    assert (e.n_topics, min(e.n_harmful, harmful_val), e.harmful_split, e.max_new_tokens, e.n_resamples,
            e.artifact) == (20, min(64, harmful_val), "harmful_val", 24, 1000, True)
    p = main.personas
    assert (p.personas, resolve_layer(30, p.layer), p.n_questions, p.n_pairs, p.n_statements, p.n_harmful,
            p.max_new_tokens, p.judge, p.n_kl_prompts) == ([], 12, 4, 2, 24, 8, 24, False, 16)
    i = main.induction
    assert (i.n_top, i.n_random, i.n_seqs, i.half, i.n_copy) == (10, 10, 8, 50, 16)
    assert (main.patching.resid_sweep, main.patching.k, main.logit_lens.k) == (True, 10, 5)

    ea = get_experiment("eval-awareness").config().eval_awareness
    assert resolve_layers(30, ea.layers) == list(range(30))
    assert (ea.n_topics, ea.n_harmful, ea.max_new_tokens, ea.n_resamples, ea.artifact) == (0, 100, 48, 2000, True)
    png = get_experiment("persona-non-grata").config()
    c, a, k = png.personas, png.attack_success, png.caa
    assert (resolve_layer(30, c.layer), c.n_questions, c.n_pairs, c.n_statements, c.n_harmful, c.max_new_tokens,
            c.judge, c.n_kl_prompts) == (12, 8, 3, 40, 16, 32, True, 0)
    assert (a.personas, resolve_layer(30, a.layer), a.coefficients, a.n_harmful, a.harmful_source,
            a.max_new_tokens, a.n_questions, a.n_pairs) == (["psychopathy", "power_seeking", "deception"], 12,
                                                            [0.0, 0.5, 1.0, 1.5, 2.0], 24, "jailbreakbench", 32, 8, 3)
    assert (k.behaviours, resolve_layers(30, k.layers), k.multipliers, k.n_build, k.n_select, k.n_test) == (
        ["myopic-reward", "sycophancy"], [6, 9, 12, 15, 18], [-2.0, -1.0, 0.0, 1.0, 2.0], 150, 30, 0)
    ind = get_experiment("induction-signatures").config()
    assert (ind.induction.n_top, ind.induction.n_random, ind.induction.n_seqs, ind.induction.n_copy) == (15, 15, 10, 20)
    pr = ind.protocol
    assert (pr.k_percent, pr.n_random_sets, pr.n_seqs, pr.half, pr.icl, pr.n_icl) == (2.0, 10, 20, 50, True, 8)
    sm = ind.shipped_model
    assert (sm.n_top, sm.n_random, sm.half, sm.k_percent) == (2, 6, 25, 25.0)
    pref = get_experiment("preference-dimensions").config().preference
    assert (pref.dimensions, pref.splits, resolve_layers(30, pref.layers), pref.limit, pref.n_resamples) == (
        [], ["easy", "hard"], list(range(30)), 150, 1000)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_cli_presets():
    r = _cli("config", "cross-check")
    assert r.returncode == 0 and "# cross-check: preset 'main' (this experiment's default)" in r.stdout
    assert "layers = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]" in r.stdout
    r = _cli("config", "smoke", "--preset", "quick")
    assert r.returncode == 0 and "n_ab_items = 4" in r.stdout and "# smoke: preset 'quick'" in r.stdout
    r = _cli("config", "smoke", "--preset", "quik")
    assert r.returncode == 2 and "has no preset 'quik'. Did you mean 'quick'?" in r.stderr
    r = _cli("experiments")
    assert "presets: defaults, main (default), quick" in r.stdout


def test_run_records_its_preset(tmp_path):
    from experiments import run_experiment

    out = tmp_path / "smoke"
    run_experiment("smoke", out=out, preset="quick", overrides=['model.name="tiny-llama"', "grid_layers=[0]"],
                   progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert m["preset"] == "quick" and m["config"]["n_ab_items"] == 4 and m["config"]["grid_layers"] == [0]


def test_layer_specs_are_checked_when_the_config_is_read():
    exp = get_experiment("cross-check")
    with pytest.raises(ConfigError, match=r"config.personas.layer = 'top': unknown layer spec 'top'"):
        exp.config(overrides=["personas.layer=top"])
    with pytest.raises(ConfigError, match=r"config.eval_awareness.layers = \[0.5, 1.5\]: a fractional layer must be"):
        exp.config(overrides=["eval_awareness.layers=[0.5, 1.5]"])
    assert exp.config(overrides=["personas.layer=middle"]).personas.layer == "middle"
