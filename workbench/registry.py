"""One registry for every plug-in kind (scorers, models, experiments): register, get with a "did you mean"
hint, list.

A :class:`Registry` maps names to objects (factories, model entries, experiments). Registering a taken name is
an error unless it is the same object again or ``overwrite=True`` (two modules claiming one name is a bug).
A registry may load its built-ins lazily: ``load`` is called once, on the first read, so importing the module
that owns the registry registers nothing heavy. A failing ``load`` raises (a missing built-in module is a bug
to report, not a plug-in to skip).
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from workbench.errors import WorkbenchError, did_you_mean

__all__ = ["Registry", "RegistryError", "UnknownNameError"]

T = TypeVar("T")


class RegistryError(WorkbenchError, ValueError):
    """A bad registration: an invalid name, or a name another object already holds."""


class UnknownNameError(WorkbenchError, KeyError):
    """No entry under that name; the message lists close matches and every registered name."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    """Named objects of one kind.

    Args:
        kind: what an entry is, in messages ("scorer", "model", "experiment").
        error: the :class:`UnknownNameError` subclass :meth:`get` raises.
        load: called once before the first read (lazy built-ins); exceptions propagate.
        unknown: the first sentence of the unknown-name message, formatted with ``kind`` and ``name``.
        footer: appended to that message (e.g. what else the caller accepts).
        n, cutoff: how many close matches the hint names, and how close they must be.
    """

    def __init__(self, kind: str, *, error: type[UnknownNameError] = UnknownNameError,
                 load: Callable[[], None] | None = None, unknown: str = "unknown {kind} {name!r}.",
                 footer: str = "", n: int = 3, cutoff: float = 0.5):
        self.kind = kind
        self._error = error
        self._load = load
        self._loaded = load is None
        self._unknown = unknown
        self._footer = footer
        self._n, self._cutoff = n, cutoff
        self._entries: dict[str, T] = {}

    # ------------------------------------------------------------------ writing
    def register(self, name: str, obj: T, *, overwrite: bool = False) -> T:
        """Add ``obj`` under ``name`` (returned, so this works in decorators)."""
        self._check_name(name)
        old = self._entries.get(name)
        if old is not None and old is not obj and not overwrite:
            raise RegistryError(f"the {self.kind} name {name!r} is already registered ({old!r}); pick another name "
                                f"or pass overwrite=True.")
        self._entries[name] = obj
        return obj

    def decorator(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """``@registry.decorator("name")``: register the decorated object under ``name``."""
        self._check_name(name)

        def deco(obj: T) -> T:
            return self.register(name, obj, overwrite=overwrite)

        return deco

    def pop(self, name: str, default: T | None = None) -> T | None:
        """Remove and return the entry under ``name`` (``default`` when there is none)."""
        return self._entries.pop(name, default)

    # ------------------------------------------------------------------ reading
    def get(self, name: str) -> T:
        """The entry under ``name``; else :attr:`error` naming close matches and every registered name."""
        self._ensure_loaded()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        hint = did_you_mean(name, self._entries, n=self._n, cutoff=self._cutoff)
        listed = ", ".join(self.names()) or "(none)"
        msg = (f"{self._unknown.format(kind=self.kind, name=name)}{hint} Registered {self.kind}s: {listed}."
               + (f" {self._footer}" if self._footer else ""))
        raise self._error(msg)

    def find(self, name: str) -> T | None:
        """The entry registered under ``name`` so far, or None (does not load the built-ins)."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._ensure_loaded()
        return sorted(self._entries)

    def values(self) -> list[T]:
        """Entries in name order."""
        return [self._entries[k] for k in self.names()]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

    # ------------------------------------------------------------------ internals
    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or name != name.strip():
            raise RegistryError(f"{self.kind} name must be a non-empty string without surrounding spaces; got "
                                f"{name!r}.")

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: loading registers through this registry
            try:
                self._load()  # type: ignore[misc]
            except BaseException:
                self._loaded = False
                raise
