"""Named experiments: a config dataclass plus a ``run(ctx, config)`` function.

Built-in experiments live in :mod:`experiments.builtin` and are registered the first time the
registry is read (importing :mod:`experiments` registers nothing and loads no model). A built-in
module that is missing or fails to import is an error, not a silently shorter list.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from workbench.registry import Registry, UnknownNameError

__all__ = ["Experiment", "experiment", "get_experiment", "list_experiments", "UnknownExperimentError"]


class UnknownExperimentError(UnknownNameError):
    """No experiment is registered under that name (the message suggests close matches)."""


@dataclass(frozen=True)
class Experiment:
    name: str
    config_cls: type
    run: Callable[[Any, Any], Any]
    description: str


_BUILTINS = ("cross_check", "persona_non_grata", "eval_awareness", "induction_signatures", "preference_dimensions",
             "smoke")


def _load_builtins() -> None:
    for mod in _BUILTINS:
        importlib.import_module(f"experiments.builtin.{mod}")


#: The experiment registry (name -> :class:`Experiment`); built-ins load on the first read.
EXPERIMENTS: Registry[Experiment] = Registry("experiment", error=UnknownExperimentError, load=_load_builtins, n=2,
                                             cutoff=0.5)


def experiment(name: str, config: type, description: str) -> Callable:
    """Decorator registering ``run(ctx, config)`` as an experiment."""
    def deco(fn: Callable) -> Callable:
        old = EXPERIMENTS.find(name)
        if old is not None and old.run is fn:  # the same module imported twice
            return fn
        EXPERIMENTS.register(name, Experiment(name, config, fn, description))
        return fn
    return deco


def get_experiment(name: str) -> Experiment:
    return EXPERIMENTS.get(name)


def list_experiments() -> list[Experiment]:
    return EXPERIMENTS.values()
