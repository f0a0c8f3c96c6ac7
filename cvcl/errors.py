"""Exception types whose message is the one line a user sees when a stage stops."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CvclError(Exception):
    """Base class: an error caused by the user's input, reported without a traceback."""


class ParamError(CvclError):
    """A value in params.yaml (or a command-line option, ``name`` starting with ``--``) has the
    wrong type or is out of range."""

    def __init__(self, name: str, value: object, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        where = name if name.startswith("--") else f"params.yaml: {name} ="
        super().__init__(f"{where} {value!r}: expected {expected}")


def closest(value: object, valid: Iterable[str]) -> str | None:
    """The valid name nearest to ``value`` by spelling, if one is near (a typo's likely intent)."""
    found = difflib.get_close_matches(str(value), list(valid), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_choice(name: str, value: object, valid: Iterable[str]) -> ParamError:
    """The error for a value of ``name`` that is not one of ``valid``, suggesting the nearest."""
    valid = list(valid)
    near = closest(value, valid)
    return ParamError(name, value, "one of " + ", ".join(valid) + (f"; did you mean {near}?" if near else ""))


class DataError(CvclError):
    """An input file is missing, corrupt or inconsistent."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
