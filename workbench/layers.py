"""Which layers: the one place that turns a layer spec into layer indices for a model.

Library functions (``steering``, ``probe``, ``circuits``) and experiment configs take layers as a
*spec*, so that nothing needs to know a model's depth in advance. A spec is one of these, or a list
of them (a TOML list in a config):

==========================  ==============================================================
``None`` or ``"all"``       every layer
``int``                     that layer; negative counts from the end (``-1`` is the last)
``float`` in ``[0, 1]``     a fraction of the depth (see the rounding rule below)
``"middle"``                the middle layer, ``n // 2`` (the same as ``0.5``)
``"first"``, ``"last"``     layer 0, layer ``n - 1`` (``"final"`` is the same as ``"last"``)
``"every:K"``               layers ``0, K, 2K, ...`` (e.g. ``"every:3"``)
``"A:B"``, ``"A:B:K"``      a Python-style slice of the layers (``"-4:"`` is the last four)
``range`` or ``slice``      the layers it selects
==========================  ==============================================================

**Rounding rule for fractions.** Think of the ``n`` layers as splitting the depth ``[0, 1]``
into ``n`` equal spans, layer ``L`` covering ``[L/n, (L+1)/n)``; a fraction ``f`` names the
layer whose span contains it: ``L = floor(f * n)``, and ``f = 1.0`` names the last layer. So
``0.5`` is ``n // 2``, the same layer as ``"middle"``; on a 30-layer model ``0.4`` is layer 12 and
``0.1, 0.2, ..., 0.9, 1.0`` are layers 3, 6, ..., 27, 29; on a 2-layer model ``0.4`` is layer 0
and ``0.5`` layer 1. (A tiny tolerance, 1e-9, absorbs binary floating point: ``0.3 * 30`` is 9,
not 8.)

Specs resolve to a sorted list of distinct layer indices, or raise :class:`LayerError` (a
``ValueError``) naming the problem and the valid range. Integers must exist: layer 12 of a
2-layer model is an error, never silently clamped; write a fraction to mean "the same depth on any
model".
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Union

from workbench.errors import WorkbenchError

__all__ = ["LayerError", "LayerSpec", "resolve_layers", "resolve_layer", "n_layers_of", "fraction_of", "check_spec"]

#: one item of a layer spec as a config field holds it (an int, a fraction, or a named spec)
LayerSpec = Union[int, float, str]

_EPS = 1e-9
_NAMED = "'all', 'middle', 'first', 'last', 'every:K', 'A:B', an int (negative from the end) or a fraction in [0, 1]"


class LayerError(WorkbenchError, ValueError):
    """A layer spec that does not fit the model."""


def n_layers_of(model_or_n: Any) -> int:
    """Number of layers of a HookedModel (or an int passed through)."""
    if isinstance(model_or_n, numbers.Integral) and not isinstance(model_or_n, bool):
        return int(model_or_n)
    try:
        return int(model_or_n.facts.n_layers)
    except AttributeError as e:
        raise TypeError(f"expected a HookedModel or a number of layers, got {type(model_or_n).__name__}") from e


def fraction_of(f: float, n: int) -> int:
    """The layer at depth fraction ``f`` of an ``n``-layer model (module docstring: the rounding rule)."""
    if not 0.0 <= f <= 1.0:
        raise LayerError(f"a fractional layer must be in [0, 1] (0.5 = the middle layer), got {f}")
    return min(int(math.floor(f * n + _EPS)), n - 1)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _string(spec: str, n: int, name: str) -> list[int]:
    s = spec.strip().lower()
    if s == "all":
        return list(range(n))
    if s == "middle":
        return [n // 2]
    if s == "first":
        return [0]
    if s in ("last", "final"):
        return [n - 1]
    if s.startswith("every:"):
        k = _int(s[6:])
        if k is None or k < 1:
            raise LayerError(f"layer spec {spec!r}: 'every:K' needs an integer K >= 1 (e.g. 'every:3')")
        return list(range(0, n, k))
    if ":" in s:
        parts = s.split(":")
        vals = [None if p.strip() == "" else _int(p) for p in parts]
        if len(parts) > 3 or any(v is None and p.strip() != "" for v, p in zip(vals, parts)) or (
                len(vals) == 3 and vals[2] == 0):
            raise LayerError(f"layer spec {spec!r} is not a slice 'A:B' or 'A:B:K' of integers (K != 0)")
        return list(range(n))[slice(*vals)]
    if _int(s) is not None:
        return _one(int(s), n, name)
    raise LayerError(f"unknown layer spec {spec!r}; use {_NAMED}, or a list of these")


def _one(spec: Any, n: int, name: str) -> list[int]:
    if isinstance(spec, bool):
        raise LayerError(f"a layer cannot be a bool ({spec!r})")
    if isinstance(spec, numbers.Integral):
        layer = int(spec) + n if spec < 0 else int(spec)
        if not 0 <= layer < n:
            raise LayerError(f"layer {spec} is out of range for {name} ({n} layers: 0..{n - 1}, or -{n}..-1); "
                             "a fraction of the depth (e.g. 0.5) fits any model")
        return [layer]
    if isinstance(spec, numbers.Real):
        return [fraction_of(float(spec), n)]
    if isinstance(spec, str):
        return _string(spec, n, name)
    if isinstance(spec, slice):
        return list(range(n))[spec]
    if isinstance(spec, range):
        return [x for s in spec for x in _one(s, n, name)]
    raise LayerError(f"unknown layer spec {spec!r} ({type(spec).__name__}); use {_NAMED}, or a list of these")


def resolve_layers(model_or_n: Any, layers: Any = None) -> list[int]:
    """Layer indices for the spec ``layers`` on a model or a number of layers (sorted, distinct).

    >>> resolve_layers(30, [-1, 0.4, 3])
    [3, 12, 29]
    >>> resolve_layers(30, "every:10")
    [0, 10, 20]
    """
    n = n_layers_of(model_or_n)
    name = getattr(model_or_n, "name", None) or f"a {n}-layer model"
    if layers is None:
        return list(range(n))
    if isinstance(layers, (numbers.Number, str, slice, range)):
        out = _one(layers, n, name)
    elif isinstance(layers, Iterable):
        out = [x for s in layers for x in _one(s, n, name)]
    else:
        raise LayerError(f"unknown layer spec {layers!r} ({type(layers).__name__}); use {_NAMED}, or a list of these")
    if not out:
        raise LayerError(f"layer spec {layers!r} selects no layers of {name} ({n} layers)")
    return sorted(set(out))


def resolve_layer(model_or_n: Any, layer: Any) -> int:
    """The single layer a spec names (an int, a fraction, "middle", "last"...); an error if it names several."""
    out = resolve_layers(model_or_n, layer)
    if len(out) != 1:
        raise LayerError(f"layer spec {layer!r} names {len(out)} layers ({out}); one layer is needed here")
    return out[0]


def check_spec(layers: Any) -> None:
    """Refuse a spec that is wrong on any model (a bool, a fraction outside [0, 1], an unknown name, 'every:0'),
    before a model is loaded; whether an integer layer exists is only known with the model."""
    items = layers if isinstance(layers, (list, tuple)) else [layers]
    for spec in items:
        if isinstance(spec, bool):
            raise LayerError(f"a layer cannot be a bool ({spec!r})")
        if isinstance(spec, numbers.Integral) or spec is None:
            continue
        # a deep enough model takes any valid non-integer spec; resolving against it checks the syntax
        _one(spec, 1 << 20, "a model")
