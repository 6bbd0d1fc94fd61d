"""Named experiments: a config dataclass plus a ``run(ctx, config)`` function, and named presets.

Built-in experiments live in :mod:`experiments.builtin` and are registered the first time the
registry is read (importing :mod:`experiments` registers nothing and loads no model). A built-in
module that is missing or fails to import is an error, not a silently shorter list. An
experiment's presets are named config overrides: ``presets=`` of :func:`experiment`, or else the
``PRESETS`` dict of the module that defines it (and ``DEFAULT_PRESET``, the one applied when the user
names none). Every experiment also has the preset ``defaults``: the config dataclasses' own defaults.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from workbench.errors import did_you_mean
from workbench.registry import Registry, UnknownNameError

__all__ = ["Experiment", "experiment", "get_experiment", "list_experiments", "UnknownExperimentError",
           "DEFAULTS_PRESET"]

#: the preset every experiment has: no overrides (the config dataclasses' own defaults)
DEFAULTS_PRESET = "defaults"


class UnknownExperimentError(UnknownNameError):
    """No experiment is registered under that name (the message suggests close matches)."""


@dataclass(frozen=True)
class Experiment:
    name: str
    config_cls: type
    run: Callable[[Any, Any], Any]
    description: str
    explicit_presets: Mapping[str, dict] | None = None
    explicit_default: str | None = None

    def _module_attr(self, name: str) -> Any:
        return getattr(sys.modules.get(self.run.__module__), name, None)

    @property
    def presets(self) -> dict[str, dict]:
        """Named config overrides: ``{name: {section: {key: value}}}`` (``defaults`` included, empty)."""
        found = self.explicit_presets if self.explicit_presets is not None else self._module_attr("PRESETS")
        return {DEFAULTS_PRESET: {}, **dict(found or {})}

    @property
    def default_preset(self) -> str | None:
        """The preset applied when none is named (None: the dataclass defaults)."""
        return self.explicit_default if self.explicit_default is not None else self._module_attr("DEFAULT_PRESET")

    def preset(self, name: str | None = None) -> tuple[str | None, dict]:
        """``(name, overrides)`` of the preset ``name``, or of the default one when ``name`` is None."""
        from .config import ConfigError, config_from_dict, nest

        name = name if name is not None else self.default_preset
        if name is None:
            return None, {}
        presets = self.presets
        if name not in presets:
            raise ConfigError(f"experiment {self.name!r} has no preset {name!r}.{did_you_mean(name, presets, n=1)} Presets: "
                              f"{', '.join(sorted(presets))}")
        data = nest(presets[name], f"preset {name!r}")
        try:
            config_from_dict(self.config_cls, data)
        except ConfigError as e:
            raise ConfigError(f"preset {name!r} of {self.name!r}: {e}") from e
        return name, data

    def config(self, config_file: Any = None, overrides: list[str] | None = None, preset: str | None = None) -> Any:
        """The config: dataclass defaults, then the preset (``preset``, else the default preset), the TOML file
        and the ``key=value`` overrides."""
        from .config import load_config

        return load_config(self.config_cls, config_file, overrides, preset=self.preset(preset)[1])


_BUILTINS = ("cross_check", "persona_non_grata", "eval_awareness", "induction_signatures", "preference_dimensions",
             "smoke", "self_assessment", "personality_illusion", "randomness", "moral_sensitivity",
             "ground_truth")


def _load_builtins() -> None:
    for mod in _BUILTINS:
        importlib.import_module(f"experiments.builtin.{mod}")


#: The experiment registry (name -> :class:`Experiment`); built-ins load on the first read.
EXPERIMENTS: Registry[Experiment] = Registry("experiment", error=UnknownExperimentError, load=_load_builtins, n=2,
                                             cutoff=0.5)


def experiment(name: str, config: type, description: str, *, presets: Mapping[str, dict] | None = None,
               default_preset: str | None = None) -> Callable:
    """Decorator registering ``run(ctx, config)`` as an experiment.

    ``presets`` (else the module's ``PRESETS``): named config overrides for ``--preset NAME``;
    ``default_preset`` (else the module's ``DEFAULT_PRESET``): the one applied when none is named.
    """
    def deco(fn: Callable) -> Callable:
        old = EXPERIMENTS.find(name)
        if old is not None and old.run is fn:  # the same module imported twice
            return fn
        EXPERIMENTS.register(name, Experiment(name, config, fn, description, presets, default_preset))
        return fn
    return deco


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)


def list_experiments() -> list[Experiment]:
    return EXPERIMENTS.values()
