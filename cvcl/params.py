"""Reading and validating ``params.yaml``.

Every stage reads its values through :class:`Params`, whose typed getters raise a
:class:`~cvcl.errors.ParamError` naming the parameter, the value and what is allowed, so a
bad value stops the stage with one line before it writes anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import yaml

from cvcl.errors import DataError, ParamError, unknown_choice
from cvcl.settings import SETTINGS, check_known

# the builtins under other names: inside Params, `int`, `float`, `bool` and `str` are its getters
_int: TypeAlias = int
_float: TypeAlias = float
_bool: TypeAlias = bool
_str: TypeAlias = str

_MISSING = object()
T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load ``params.yaml`` (or another YAML file) into a :class:`Params`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found; run the stage from the repository root")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(path, f"is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a mapping of parameter names to values")
    check_known(flatten(data), str(path))  # a misspelt key must not be ignored in silence
    return Params(data, source=str(path))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted names: ``{"train": {"lr": 0.01}} -> {"train.lr": 0.01}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


class Params:
    """Read-only view of the parameter tree with typed, validating getters.

    Names are dotted paths (``"train.lr"``). Each getter returns the value converted to the
    requested type or raises :class:`ParamError`.
    """

    def __init__(self, data: Mapping[str, Any], source: str = "params.yaml") -> None:
        self._data = data
        self.source = source

    # -- raw access ----------------------------------------------------------------------
    def raw(self, name: str, default: Any = _MISSING) -> Any:
        node: Any = self._data
        for part in name.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is not _MISSING:
                    return default
                raise ParamError(name, None, "a value (the key is missing)")
            node = node[part]
        return node

    def flat(self, sections: Iterable[str] | None = None) -> dict[str, Any]:
        """Dotted names and values, for all of the tree or the named top-level keys."""
        if sections is None:
            return flatten(self._data)
        out: dict[str, Any] = {}
        for key in sections:
            if key not in self._data:
                continue
            value = self._data[key]
            out.update(flatten(value, f"{key}.") if isinstance(value, Mapping) else {key: value})
        return out

    # -- declared parameters -------------------------------------------------------------
    def get(self, name: str) -> Any:
        """The value of a parameter declared in :mod:`cvcl.settings`, checked against its
        declaration (type, range, choices); its declared default when the key is absent."""
        s = SETTINGS[name]
        d = s.default
        if s.kind == "int":
            low, high = (None if b is None else int(b) for b in (s.min, s.max))
            return self.int(name, min=low, max=high, default=d)
        if s.kind == "float":
            return self.float(name, min=s.min, max=s.max, min_exclusive=s.min_exclusive, default=d)
        if s.kind == "bool":
            return self.bool(name, default=d)
        if s.kind == "str":
            return self.str(name, optional=s.optional, default=d)
        if s.kind == "path":
            return self.path(name, optional=s.optional, default=d)
        if s.kind == "choice":
            return self.choice(name, s.allowed(), default=d)
        if s.kind == "choices":
            return self.choice_list(name, s.allowed(), default=d)
        if s.optional and self.raw(name, default=d) is None:
            return None
        if s.kind == "spacing":
            return self._spacing(name)
        if s.kind == "ints":
            return self.int_list(name, length=s.length, min=None if s.min is None else int(s.min), default=d)
        if s.kind == "floats":
            return self.float_list(name, length=s.length, min=s.min, min_exclusive=s.min_exclusive, default=d)
        return self.raw(name, default=d)

    def config(self, cls: type[T], section: str, **given: Any) -> T:
        """An instance of the dataclass ``cls`` whose fields are the declared parameters
        ``<section>.<field>`` (``<field>`` for ``section`` ``""``, the top-level keys), checked
        and with lists as tuples; ``given`` fields are taken as they are, the others (not
        parameters, or nested sections) keep the dataclass's defaults."""
        values = dict(given)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            name = f"{section}.{f.name}" if section else f.name
            if f.name not in values and name in SETTINGS:
                value = self.get(name)
                values[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)

    def _spacing(self, name: str) -> tuple[float, float, float]:
        """One spacing in mm for every axis, or three (X, Y, Z)."""
        value = self.raw(name)
        values = value if isinstance(value, (list, tuple)) else [value]
        ok = (
            len(values) in (1, 3)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and all(0 < v <= 100 for v in values)
        )
        if not ok:
            raise ParamError(name, value, "null, a spacing in mm (0 < s <= 100) or three of them [x, y, z]")
        x, y, z = (float(v) for v in (values * 3 if len(values) == 1 else values))
        return x, y, z

    # -- typed getters -------------------------------------------------------------------
    def int(self, name: _str, *, min: _int | None = None, max: _int | None = None, default: Any = _MISSING) -> _int:
        value = self.raw(name, default)
        return _as_int(name, value, min, max)

    def float(
        self,
        name: _str,
        *,
        min: _float | None = None,
        max: _float | None = None,
        min_exclusive: _bool = False,
        default: Any = _MISSING,
    ) -> _float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamError(name, value, f"a number{_range_text(min, max, min_exclusive)}")
        value = float(value)
        if min is not None and (value < min or (min_exclusive and value == min)):
            raise ParamError(name, value, f"a number{_range_text(min, max, min_exclusive)}")
        if max is not None and value > max:
            raise ParamError(name, value, f"a number{_range_text(min, max, min_exclusive)}")
        return value

    def bool(self, name: _str, *, default: Any = _MISSING) -> _bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ParamError(name, value, "true or false")
        return value

    def str(self, name: _str, *, optional: _bool = False, default: Any = _MISSING) -> _str | None:
        value = self.raw(name, default)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise ParamError(name, value, "a non-empty string" + (" or null" if optional else ""))
        return value

    def choice(self, name: _str, choices: Sequence[_str], *, default: Any = _MISSING) -> _str:
        value = self.raw(name, default)
        if value not in choices:
            raise unknown_choice(name, value, choices)
        return value

    def choice_list(self, name: _str, choices: Sequence[_str], *, default: Any = _MISSING) -> list[_str]:
        """A non-empty list of distinct values, each one of ``choices`` (order kept)."""
        value = self.raw(name, default)
        what = "a non-empty list of distinct values from " + ", ".join(choices)
        if (
            not isinstance(value, (list, tuple))
            or not value
            or len(set(map(repr, value))) != len(value)
            or any(v not in choices for v in value)
        ):
            raise ParamError(name, value, what)
        return list(value)

    def path(self, name: _str, *, optional: _bool = False, default: Any = _MISSING) -> _str | None:
        """A file-system path or URL as a string; ``~`` expanded. Relative paths are left relative."""
        value = self.str(name, optional=optional, default=default)
        if value is None or "://" in value:
            return value
        return str(Path(value).expanduser())

    def int_list(
        self, name: _str, *, length: _int | None = None, min: _int | None = None, default: Any = _MISSING
    ) -> list[_int]:
        value = self.raw(name, default)
        what = f"a list of {length or 'N'} integers" + (f" >= {min}" if min is not None else "")
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            raise ParamError(name, value, what)
        try:
            return [_as_int(name, v, min, None) for v in value]
        except ParamError:
            raise ParamError(name, value, what) from None

    def float_list(
        self,
        name: _str,
        *,
        length: _int | None = None,
        min: _float | None = None,
        min_exclusive: _bool = False,
        default: Any = _MISSING,
    ) -> list[_float]:
        value = self.raw(name, default)
        bound = f" {'>' if min_exclusive else '>='} {min}" if min is not None else ""
        what = f"a list of {length or 'N'} numbers{bound}"
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            raise ParamError(name, value, what)
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParamError(name, value, what)
            if min is not None and (v < min or (min_exclusive and v == min)):
                raise ParamError(name, value, what)
            out.append(float(v))
        return out


def _range_text(min: float | None, max: float | None, min_exclusive: bool = False) -> str:
    if min is not None and max is not None:
        return f" in {'(' if min_exclusive else '['}{min}, {max}]"
    if min is not None:
        return f" {'>' if min_exclusive else '>='} {min}"
    if max is not None:
        return f" <= {max}"
    return ""


def _as_int(name: str, value: Any, min: int | None, max: int | None) -> int:
    expected = f"an integer{_range_text(min, max)}"
    if isinstance(value, bool):
        raise ParamError(name, value, expected)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ParamError(name, value, expected)
    if (min is not None and value < min) or (max is not None and value > max):
        raise ParamError(name, value, expected)
    return value
