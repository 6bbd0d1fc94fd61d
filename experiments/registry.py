"""Named experiments: a config dataclass plus a ``run(ctx, config)`` function, and named presets.

Built-in experiments live in :mod:`experiments.builtin` and are registered the first time the
registry is read (importing :mod:`experiments` registers nothing and loads no model). An
experiment's presets are named config overrides: ``presets=`` of :func:`experiment`, or else the
``PRESETS`` dict of the module that defines it (and ``DEFAULT_PRESET``, the one applied when the user
names none). Every experiment also has the preset ``defaults``: the config dataclasses' own defaults.
"""

from __future__ import annotations

from workbench.errors import WorkbenchError
import difflib
import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = ["Experiment", "experiment", "get_experiment", "list_experiments", "UnknownExperimentError",
           "DEFAULTS_PRESET"]

#: the preset every experiment has: no overrides (the config dataclasses' own defaults)
DEFAULTS_PRESET = "defaults"


class UnknownExperimentError(WorkbenchError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


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
            close = difflib.get_close_matches(name, list(presets), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"experiment {self.name!r} has no preset {name!r}.{hint} Presets: "
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


_EXPERIMENTS: dict[str, Experiment] = {}
_BUILTINS = ("cross_check", "persona_non_grata", "eval_awareness", "induction_signatures", "preference_dimensions",
             "smoke")


def experiment(name: str, config: type, description: str, *, presets: Mapping[str, dict] | None = None,
               default_preset: str | None = None) -> Callable:
    """Decorator registering ``run(ctx, config)`` as an experiment.

    ``presets`` (else the module's ``PRESETS``): named config overrides for ``--preset NAME``;
    ``default_preset`` (else the module's ``DEFAULT_PRESET``): the one applied when none is named.
    """
    def deco(fn: Callable) -> Callable:
        if name in _EXPERIMENTS and _EXPERIMENTS[name].run is not fn:
            raise ValueError(f"experiment {name!r} is already registered")
        _EXPERIMENTS[name] = Experiment(name, config, fn, description, presets, default_preset)
        return fn
    return deco


def _load_builtins() -> None:
    for mod in _BUILTINS:
        try:
            importlib.import_module(f"experiments.builtin.{mod}")
        except ModuleNotFoundError as e:
            if e.name != f"experiments.builtin.{mod}":
                raise


def get_experiment(name: str) -> Experiment:
    _load_builtins()
    if name not in _EXPERIMENTS:
        close = difflib.get_close_matches(name, list(_EXPERIMENTS), n=2, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownExperimentError(f"unknown experiment {name!r}.{hint} Available: {', '.join(sorted(_EXPERIMENTS))}")
    return _EXPERIMENTS[name]


def list_experiments() -> list[Experiment]:
    _load_builtins()
    return [_EXPERIMENTS[k] for k in sorted(_EXPERIMENTS)]
