"""Which layers: one place that turns a layer spec into layer indices for a model.

A layer spec is ``None`` or ``"all"`` (every layer), an ``int`` (negative counts from the end),
a ``float`` in ``[0, 1]`` (a fraction of the depth: ``0.5`` is the middle layer), ``"middle"``,
a ``range``/``slice``, or a list of any of these. Specs resolve to a sorted list of distinct
layer indices, or raise :class:`LayerError` naming the valid range.
"""

from __future__ import annotations

from workbench.errors import WorkbenchError
from typing import Any, Iterable

__all__ = ["LayerError", "resolve_layers", "n_layers_of"]


class LayerError(WorkbenchError, ValueError):
    """A layer spec that does not fit the model."""


def n_layers_of(model_or_n: Any) -> int:
    """Number of layers of a HookedModel (or an int passed through)."""
    if isinstance(model_or_n, int):
        return model_or_n
    try:
        return int(model_or_n.facts.n_layers)
    except AttributeError as e:
        raise TypeError(f"expected a HookedModel or a number of layers, got {type(model_or_n).__name__}") from e


def _one(spec: Any, n: int, name: str) -> list[int]:
    if isinstance(spec, bool):
        raise LayerError(f"a layer cannot be a bool ({spec!r})")
    if isinstance(spec, int):
        layer = spec + n if spec < 0 else spec
        if not 0 <= layer < n:
            raise LayerError(f"layer {spec} is out of range for {name} ({n} layers: 0..{n - 1}, or -{n}..-1)")
        return [layer]
    if isinstance(spec, float):
        if not 0.0 <= spec <= 1.0:
            raise LayerError(f"a fractional layer must be in [0, 1] (0.5 = the middle layer), got {spec}")
        return [int(round(spec * (n - 1)))]
    if isinstance(spec, str):
        if spec == "all":
            return list(range(n))
        if spec == "middle":
            return [n // 2]
        raise LayerError(f"unknown layer spec {spec!r}; use 'all', 'middle', an int, a fraction in [0, 1], or a list")
    if isinstance(spec, slice):
        return list(range(n))[spec]
    if isinstance(spec, range):
        return [x for s in spec for x in _one(s, n, name)]
    raise LayerError(f"unknown layer spec {spec!r} ({type(spec).__name__})")


def resolve_layers(model_or_n: Any, layers: Any = None) -> list[int]:
    """Layer indices for ``layers`` on a model (sorted, distinct).

    >>> resolve_layers(30, [-1, 0.5, 3])
    [3, 14, 29]
    """
    n = n_layers_of(model_or_n)
    name = getattr(model_or_n, "name", f"a {n}-layer model")
    if layers is None:
        return list(range(n))
    if isinstance(layers, (int, float, str, slice, range)):
        out = _one(layers, n, name)
    elif isinstance(layers, Iterable):
        out = [x for s in layers for x in _one(s, n, name)]
    else:
        raise LayerError(f"unknown layer spec {layers!r} ({type(layers).__name__})")
    if not out:
        raise LayerError(f"layer spec {layers!r} selects no layers of {name} ({n} layers)")
    return sorted(set(out))
