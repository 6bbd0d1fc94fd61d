"""Conventions every typed result follows (the result contract; see ``workbench/AGENTS.md``).

A result is a dataclass that records where it came from (``provenance``, a :class:`Provenance`:
model, weights hash, data hash, seed, sites), turns into a tidy :class:`pandas.DataFrame` with
``to_dataframe()``, says what it found in one string with ``summary()``, and has a plot function
``plot_x(result) -> Figure`` in its package's ``plots.py``, registered for its type with
:func:`register_plot`. :func:`plots_for` finds a result's plots, so a run can write any result
(table, figures, summary) without knowing its type (``experiments.writer.StepWriter.result``).

:func:`data_hash` gives a stable short sha256 of data (prompts, records, arrays, files) so a
result can say exactly which inputs produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["Provenance", "data_hash", "file_sha256", "to_jsonable", "register_plot", "plots_for", "registered_plots"]


@dataclass(frozen=True)
class Provenance:
    """Where a result came from.

    Attributes:
        model: registered model name, local path, or HF id.
        model_hash: sha256 (short) of the weights actually used.
        data_hash: :func:`data_hash` of the inputs (prompts, records, labels).
        seed: the seed of every random choice made (bootstrap, splits, sampling).
        sites: canonical site names read or written.
        extra: anything else a method needs to record (method options, versions).
        source_hash: sha256 of the artefact the weights were built from: the GGUF file for the default
            model, the LoRA adapter for a model organism (``smollm2-135m-instruct+<name>``).
    """

    model: str | None = None
    model_hash: str | None = None
    data_hash: str | None = None
    seed: int | None = None
    sites: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    source_hash: str | None = None

    def to_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> "Provenance":
        return dataclasses.replace(self, **changes)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, paths, tuples and dataclasses to JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch arrays and scalars
        return obj.tolist()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def _feed(h: "hashlib._Hash", obj: Any) -> None:
    if isinstance(obj, (bytes, bytearray)):
        h.update(b"b")
        h.update(bytes(obj))
    elif hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        _feed(h, obj.detach().cpu().numpy())
    elif hasattr(obj, "tobytes") and hasattr(obj, "dtype") and hasattr(obj, "shape"):
        h.update(f"a{obj.dtype}{tuple(obj.shape)}".encode())
        h.update(obj.tobytes())
    else:
        h.update(json.dumps(to_jsonable(obj), sort_keys=True, ensure_ascii=False).encode())


def data_hash(*objs: Any, length: int = 16) -> str:
    """Stable short sha256 of JSON-able data, arrays or tensors (order-sensitive)."""
    h = hashlib.sha256()
    for obj in objs:
        _feed(h, obj)
    return h.hexdigest()[:length]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Full hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


# -- plots per result type -------------------------------------------------------------------------
# "module:QualName" of a result type -> {plot name: fn(result) -> Figure}, in registration order. Types are named
# by string so a plots module need not import (torch-heavy) result modules to register for them.
_PLOTS: dict[str, dict[str, Callable[[Any], Any]]] = {}


def _type_key(t: type | str) -> str:
    if isinstance(t, str):
        if ":" not in t:
            raise ValueError(f"name a result type as 'package.module:ClassName', got {t!r}")
        return t
    return f"{t.__module__}:{t.__qualname__}"


def register_plot(result_type: type | str, name: str = "plot") -> Callable:
    """Decorator: register ``fn(result) -> matplotlib Figure`` as a plot of ``result_type``.

    ``result_type`` is the class or its ``"package.module:ClassName"``. A type may have several
    plots, told apart by ``name`` (a run writes plot ``"plot"`` as ``<name>.png`` and any other as
    ``<name>_<plot>.png``). Register in the result's package's ``plots.py``: :func:`plots_for`
    imports that module when it finds nothing registered yet.
    """
    key = _type_key(result_type)

    def deco(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        _PLOTS.setdefault(key, {})[name] = fn
        return fn
    return deco


def plots_for(result: Any) -> dict[str, Callable[[Any], Any]]:
    """The plots registered for ``result``'s type (or the nearest base class that has some): ``{name: fn}``.

    When none is registered yet, ``<package>.plots`` of the type's top-level package is imported (it
    registers its plots) and the lookup repeated; a type without plots gives ``{}``.
    """
    cls = result if isinstance(result, type) else type(result)
    for attempt in range(2):
        for c in cls.__mro__:
            found = _PLOTS.get(f"{c.__module__}:{c.__qualname__}")
            if found:
                return dict(found)
        if attempt == 0:
            import importlib

            mod = f"{cls.__module__.split('.')[0]}.plots"
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as e:
                if e.name != mod:
                    raise
                return {}
    return {}


def registered_plots() -> dict[str, list[str]]:
    """Every registered result type and the names of its plots (for checks and documentation)."""
    return {k: list(v) for k, v in _PLOTS.items()}
