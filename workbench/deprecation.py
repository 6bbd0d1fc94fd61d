"""Old public names kept for a while: a module ``__getattr__`` that serves them with a DeprecationWarning.

Used where a name had two meanings in two packages and one of them was renamed (see the issue note: one
home per name). Usage, at the end of a module::

    __getattr__ = renamed_names(__name__, {"old_name": "new_name"})
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable

__all__ = ["renamed_names"]


def renamed_names(module: str, renames: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``module`` that returns ``module.<new>`` for each ``old`` name in
    ``renames`` ({old: new}), warning that the old name is deprecated; other names raise AttributeError."""

    def __getattr__(name: str) -> Any:
        new = renames.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} was renamed {module}.{new}; the old name will be removed.",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)

    return __getattr__
