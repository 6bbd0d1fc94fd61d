"""Declarative experiment configs: dataclasses, loaded from TOML and validated strictly.

Every experiment declares its config as a dataclass (sections are nested dataclasses). A TOML
file or ``--set section.key=value`` overrides fill it in; an unknown key is an error that lists
the valid keys, and a value of the wrong type is an error that names the key and the expected
type. ``workbench config EXPERIMENT`` prints the defaults as TOML to start a file from, each key
with its documentation (the ``Attributes:`` section of its dataclass's docstring) as a comment.

Presets: an experiment may name sets of overrides (``PRESETS = {"quick": {...}}`` in its module,
nested like the TOML or with dotted keys). A config is built in this order, each step overriding the
one before: the dataclass defaults (one per parameter), the preset (the one asked for, else the
experiment's ``DEFAULT_PRESET`` if it has one), the TOML file, the ``key=value`` overrides.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from workbench.errors import WorkbenchError, did_you_mean
from workbench.layers import LayerSpec, check_spec

__all__ = ["ConfigError", "config_from_dict", "load_config", "config_to_dict", "to_toml", "apply_overrides",
           "ModelSection", "model_names", "nest", "merge", "field_docs"]


class ConfigError(WorkbenchError, ValueError):
    pass


@dataclasses.dataclass
class ModelSection:
    """``[model]``: which model to run and where (shared by every experiment).

    Attributes:
        name: a registered model name (``workbench models``), a local HF directory, a .gguf file or a hub id.
        backend: ``tl`` (TransformerLens) or ``nnsight``; both give the same numbers.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        dtype: the weights' dtype.
        models: several models to run in one run (each as ``name``), for experiments that compare models (every
            built-in one but ``smoke`` and ``ground-truth``); empty: the one model ``name``. ``name`` then stays at its default or names one
            of them.
    """

    name: str = "smollm2-135m-instruct"
    backend: Literal["tl", "nnsight"] = "tl"
    device: str = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    models: list[str] = dataclasses.field(default_factory=list)


def model_names(sec: ModelSection) -> list[str]:
    """The models a run visits, in order: ``sec.models`` when given, else ``[sec.name]``.

    Refused (:class:`ConfigError`): a model named twice, an empty name, and a ``name`` that is neither its
    default nor one of ``models`` (two conflicting answers to "which model")."""
    if not sec.models:
        return [sec.name]
    names = [str(n) for n in sec.models]
    if any(not n.strip() for n in names):
        raise ConfigError(f"model.models = {names!r}: a model name is empty")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ConfigError(f"model.models names {n!r} twice; list each model once")
        seen.add(n)
    default = next(f.default for f in dataclasses.fields(ModelSection) if f.name == "name")
    if sec.name != default and sec.name not in names:
        raise ConfigError(f"model.name = {sec.name!r} conflicts with model.models = {names!r}; name the models "
                          "in one place (model.models, or --model once per model)")
    return names


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if get_origin(tp) is Union:
        return " or ".join(_type_name(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Union:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            close = did_you_mean(value, get_args(tp), n=1, cutoff=0.6, inline=True)
            hint = f" ({close})" if close else ""
            raise ConfigError(f"{where}: {value!r} is not one of {_type_name(tp)}{hint}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = get_args(tp)[:1] or (Any,)
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table (section) of {tp.__name__} settings, got {value!r}")
        return config_from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def config_from_dict(cls: type, data: dict, where: str = "config") -> Any:
    """Build ``cls`` from a (nested) dict, rejecting unknown keys with the valid ones listed."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        hint = did_you_mean(k, fields, n=1, cutoff=0.6)
        raise ConfigError(f"unknown key {k!r} in [{where}].{hint} Valid keys: {', '.join(fields)}.")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    for k, v in kwargs.items():
        _check_count(fields[k], v, f"{where}.{k}")
        if hints[k] in (LayerSpec, list[LayerSpec]):
            try:
                check_spec(v)
            except ValueError as e:
                raise ConfigError(f"{where}.{k} = {v!r}: {e}") from e
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[{where}]: {e}") from e


_COUNT_NAMES = ("max_new_tokens", "limit", "k", "batch_size", "protocol_seqs", "n_resamples")


def is_count(name: str) -> bool:
    """Whether a config key is a count (``n_*`` and the names in ``_COUNT_NAMES``)."""
    return name.startswith("n_") or name in _COUNT_NAMES


def _check_count(f: dataclasses.Field, value: Any, where: str) -> None:
    """A count must be >= 1, or >= 0 where 0 has a documented meaning (``metadata={"zero": "..."}``, or a
    default of 0, which by convention means "all" or "none")."""
    if not is_count(f.name) or isinstance(value, bool) or not isinstance(value, int):
        return
    zero = f.metadata.get("zero") if f.metadata else None
    if zero is None and f.default == 0:
        zero = "the default"
    if value < 0 or (value == 0 and zero is None):
        need = f">= 0 (0 means {zero})" if zero is not None else ">= 1"
        raise ConfigError(f"{where} = {value}: a count must be {need}")


def _read_toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from e


def nest(data: dict, where: str = "preset") -> dict:
    """``{"a.b": 1, "c": {"d": 2}}`` -> ``{"a": {"b": 1}, "c": {"d": 2}}`` (dotted keys become sections)."""
    out: dict = {}
    for k, v in data.items():
        parts = str(k).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {k!r}: {p!r} is not a section")
        node[parts[-1]] = merge(node.get(parts[-1], {}), nest(v, where)) if isinstance(v, dict) else v
    return out


def merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``, section by section (neither is changed)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None, *,
                preset: dict | None = None) -> Any:
    """Defaults of ``cls``, updated from ``preset`` (a dict of overrides), a TOML file and ``key=value``
    overrides, in that order; validated."""
    data: dict = nest(preset or {})
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        data = merge(data, _read_toml(p))
    data = apply_overrides(data, overrides or [])
    return config_from_dict(cls, data)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings (value parsed as TOML, else taken as a string)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = _read_toml_value(raw)
        except Exception:
            value = raw
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def _read_toml_value(raw: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(f"v = {raw}")["v"]


def config_to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    raise TypeError(f"cannot write {v!r} as TOML")


def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass's docstring (Google style)."""
    import inspect

    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return out
    indent, current = None, None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        ind = len(line) - len(line.lstrip())
        if indent is None:
            indent = ind
        if ind < indent:
            break
        text = line.strip()
        if ind == indent and ":" in text:
            names, _, rest = text.partition(":")
            current = [n.strip() for n in names.split(",")]
            for n in current:
                out[n] = rest.strip()
        elif current:
            for n in current:
                out[n] = f"{out[n]} {text}".strip()
    return out


def _comment(text: str, width: int = 100) -> list[str]:
    import textwrap

    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def to_toml(obj: Any, *, docs: bool = True) -> str:
    """The config as TOML (scalars first, then one table per section); with ``docs``, each key preceded by
    its documentation from the dataclass docstrings as a comment."""
    d = config_to_dict(obj)
    lines, tables = [], []
    top_docs = field_docs(type(obj)) if docs else {}
    for k, v in d.items():
        if isinstance(v, dict):
            tables.append((k, v, field_docs(type(getattr(obj, k))) if docs else {}))
        elif v is not None:
            lines += _comment(top_docs[k]) if k in top_docs else []
            lines.append(f"{k} = {_toml_value(v)}")
    for name, t, sec_docs in tables:
        lines.append(f"\n[{name}]")
        for k, v in t.items():
            if v is not None and not isinstance(v, dict):
                lines += _comment(sec_docs[k]) if k in sec_docs else []
                lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
