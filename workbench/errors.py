"""The root of the workbench's own errors.

Every error the workbench raises on purpose (bad input, a missing file, an unsupported model, a
run directory in the wrong state) is a :class:`WorkbenchError`, and also an instance of the
built-in class it has always been (``ValueError``, ``KeyError``, ``FileNotFoundError``...), so
``except ValueError`` keeps working. Its message names the problem and the fix; the command line
prints it as one line (``workbench: error: ...``, exit code 2) instead of a traceback.
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["WorkbenchError", "InputError", "check_count", "close_matches", "did_you_mean", "hint_for"]


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


def close_matches(name: object, choices: Iterable[object], *, n: int = 3, cutoff: float = 0.5) -> list[str]:
    """Up to ``n`` of ``choices`` (as strings) that look like ``name``, best first (``difflib`` similarity >=
    ``cutoff``)."""
    import difflib

    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=cutoff)


def did_you_mean(name: object, choices: Iterable[object], *, n: int = 3, cutoff: float = 0.5,
                 inline: bool = False) -> str:
    """The "did you mean" hint of an error message: ``" Did you mean 'a', 'b' or 'c'?"`` (with a leading space,
    to follow a sentence that ends in a full stop), or ``""`` when nothing in ``choices`` is close to ``name``.

    ``inline=True`` gives ``"did you mean 'a'?"`` (no leading space, lower case) for use after a semicolon or
    inside parentheses. The one implementation every "unknown name" error of the workbench uses.
    """
    return hint_for(close_matches(name, choices, n=n, cutoff=cutoff), inline=inline)


def hint_for(candidates: Iterable[object], *, inline: bool = False) -> str:
    """:func:`did_you_mean`'s text for candidates found another way (e.g. mapped to another spelling)."""
    names = [repr(str(c)) for c in candidates]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"did you mean {listed}?" if inline else f" Did you mean {listed}?"
