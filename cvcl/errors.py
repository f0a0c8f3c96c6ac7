"""Exception types whose message is the one line a user sees when a stage stops."""

from __future__ import annotations


class CvclError(Exception):
    """Base class: an error caused by the user's input, reported without a traceback."""


class ParamError(CvclError):
    """A value in params.yaml has the wrong type or is out of range."""

    def __init__(self, name: str, value: object, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"params.yaml: {name} = {value!r}: expected {expected}")


class DataError(CvclError):
    """An input file is missing, corrupt or inconsistent."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
