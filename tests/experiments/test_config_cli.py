"""Configs are strict; the CLI lists, prints and refuses clearly."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.config import ConfigError, ModelSection, apply_overrides, config_from_dict, load_config, to_toml
from experiments.registry import UnknownExperimentError, get_experiment

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class Probe:
    layers: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    c: float = 1.0


@dataclasses.dataclass
class Cfg:
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    probe: Probe = dataclasses.field(default_factory=Probe)
    seed: int = 0
    name: str = "x"


def test_unknown_keys_list_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'sede' in \[config\]\. Did you mean 'seed'\? Valid keys: model, probe, seed, name"):
        config_from_dict(Cfg, {"sede": 1})
    with pytest.raises(ConfigError, match=r"unknown key 'layer' in \[config.probe\]\. Did you mean 'layers'"):
        config_from_dict(Cfg, {"probe": {"layer": [1]}})


def test_types_and_literals_checked():
    with pytest.raises(ConfigError, match=r"config.seed: expected an integer, got '3'"):
        config_from_dict(Cfg, {"seed": "3"})
    with pytest.raises(ConfigError, match=r"config.probe.layers\[1\]: expected an integer"):
        config_from_dict(Cfg, {"probe": {"layers": [1, "a"]}})
    with pytest.raises(ConfigError, match=r"'nnsigh' is not one of 'tl' \| 'nnsight' \(did you mean 'nnsight'\?\)"):
        config_from_dict(Cfg, {"model": {"backend": "nnsigh"}})
    c = config_from_dict(Cfg, {"probe": {"c": 2}, "model": {"backend": "nnsight"}})
    assert c.probe.c == 2.0 and isinstance(c.probe.c, float) and c.model.backend == "nnsight"


def test_toml_round_trip_and_overrides(tmp_path):
    c = config_from_dict(Cfg, {"probe": {"layers": [3, 4]}, "seed": 5, "name": 'a "q"'})
    p = tmp_path / "c.toml"
    p.write_text(to_toml(c))
    assert load_config(Cfg, p) == c
    c2 = load_config(Cfg, p, ["probe.layers=[7]", "model.name=tiny-llama", "seed=9"])
    assert c2.probe.layers == [7] and c2.model.name == "tiny-llama" and c2.seed == 9
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        apply_overrides({}, ["seed"])
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(Cfg, bad)


def test_unknown_experiment():
    with pytest.raises(UnknownExperimentError, match="Did you mean 'smoke'"):
        get_experiment("smok")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_cli_lists_and_refuses():
    r = _cli("models")
    assert r.returncode == 0 and "* smollm2-135m-instruct" in r.stdout and "tiny-llama" in r.stdout
    r = _cli("experiments")
    assert r.returncode == 0
    for name in ("cross-check", "eval-awareness", "persona-non-grata", "induction-signatures", "preference-dimensions",
                 "smoke"):
        assert name in r.stdout
    r = _cli("config", "smoke")
    assert r.returncode == 0 and "[model]" in r.stdout and 'name = "smollm2-135m-instruct"' in r.stdout
    r = _cli("run", "smoke", "--set", "n_ab_itemz=3", "--out", "/tmp/never")
    assert r.returncode == 2 and "unknown key 'n_ab_itemz'" in r.stderr and "Did you mean 'n_ab_items'" in r.stderr
