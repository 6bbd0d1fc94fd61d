"""Named experiments: a config dataclass plus a ``run(ctx, config)`` function.

Built-in experiments live in :mod:`experiments.builtin` and are registered the first time the
registry is read (importing :mod:`experiments` registers nothing and loads no model).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Experiment", "experiment", "get_experiment", "list_experiments", "UnknownExperimentError"]


class UnknownExperimentError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Experiment:
    name: str
    config_cls: type
    run: Callable[[Any, Any], Any]
    description: str


_EXPERIMENTS: dict[str, Experiment] = {}
_BUILTINS = ("cross_check", "persona_non_grata", "eval_awareness", "induction_signatures", "preference_dimensions",
             "smoke", "ground_truth")


def experiment(name: str, config: type, description: str) -> Callable:
    """Decorator registering ``run(ctx, config)`` as an experiment."""
    def deco(fn: Callable) -> Callable:
        if name in _EXPERIMENTS and _EXPERIMENTS[name].run is not fn:
            raise ValueError(f"experiment {name!r} is already registered")
        _EXPERIMENTS[name] = Experiment(name, config, fn, description)
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
