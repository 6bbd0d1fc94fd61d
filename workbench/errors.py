"""The root of the workbench's own errors.

Every error the workbench raises on purpose (bad input, a missing file, an unsupported model, a
run directory in the wrong state) is a :class:`WorkbenchError`, and also an instance of the
built-in class it has always been (``ValueError``, ``KeyError``, ``FileNotFoundError``...), so
``except ValueError`` keeps working. Its message names the problem and the fix; the command line
prints it as one line (``workbench: error: ...``, exit code 2) instead of a traceback.
"""

from __future__ import annotations

__all__ = ["WorkbenchError", "InputError", "check_count"]


class WorkbenchError(Exception):
    """An error with a message meant for the user: what is wrong and how to fix it."""


class InputError(WorkbenchError, ValueError):
    """A bad argument to a workbench function (a count below its minimum, a value out of range)."""


def check_count(value: object, name: str, minimum: int = 1, error: type[Exception] = InputError) -> int:
    """``value`` as an int, refused (with ``error``) unless it is an integer ``>= minimum``.

    Counts (prompts, sequences, samples, resamples, batch sizes) enter through many functions; a
    zero or negative one used to yield empty, all-NaN or silently truncated results downstream.
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)
