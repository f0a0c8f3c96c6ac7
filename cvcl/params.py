"""Reading and validating ``params.yaml``: :meth:`Params.config` builds a section's pydantic
dataclass from the tree, :meth:`Params.get` one declared value; a value the declaration refuses
raises a :class:`~cvcl.errors.ParamError` naming the parameter, the value and what is allowed (in
words read from the field's JSON Schema), so a stage stops with one line before writing anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError

from cvcl.errors import DataError, ParamError, unknown_choice
from cvcl.settings import SETTINGS, Expected, _leaves, check_known, declared

_MISSING, _ABSENT = object(), object()
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
    """Read-only view of the parameter tree. Names are dotted paths (``"train.lr"``)."""

    def __init__(self, data: Mapping[str, Any], source: str = "params.yaml") -> None:
        self._data = data
        self.source = source

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
        keys = self._data if sections is None else [k for k in sections if k in self._data]
        return flatten({k: self._data[k] for k in keys})

    def get(self, name: str) -> Any:
        """The value of a parameter declared in :mod:`cvcl.settings`, checked against its
        declaration (type, range, choices; lists as tuples); its default when the key is absent."""
        s = SETTINGS[name]
        value = self.raw(name, default=_ABSENT)
        if value is _ABSENT:
            return s.info.default
        return getattr(_build(s.owner, name.rsplit(".", 1)[0] if "." in name else "", {s.field: value}), s.field)

    def config(self, cls: type[T], section: str, **given: Any) -> T:
        """The section dataclass ``cls`` whose fields are the parameters ``<section>.<field>``
        (``<field>`` for ``section`` ``""``, the top-level keys), nested sections included;
        ``given`` fields are taken as they are, absent keys keep their defaults."""
        node = self.raw(section, default={}) if section else self._data
        if not isinstance(node, Mapping):
            raise ParamError(section, node, "a mapping of its keys")
        values, own = dict(given), declared(cls, section)
        for field, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
            name = f"{section}.{field}" if section else field
            if field in values:
                continue
            if hasattr(info.annotation, "__pydantic_fields__"):
                values[field] = self.config(info.annotation, name)
            elif field in node and name in own:
                values[field] = node[field]
        if section:  # a key neither this section's nor another's (a section nested in another)
            check_known({k: v for k, v in flatten(node, f"{section}.").items() if k not in own}, self.source)
        return _build(cls, section, values)


def _coerce(value: Any, annotation: Any) -> Any:
    """YAML's shapes as the strict sections take them: lists as tuples, an integral float as an
    integer where the field holds integers (``6e3`` iterations)."""
    if isinstance(value, (list, tuple)):
        return tuple(_coerce(v, annotation) for v in value)
    leaves = set(_leaves(annotation))
    integral = int in leaves and float not in leaves and isinstance(value, float) and value.is_integer()
    return int(value) if integral else value


def _build(cls: type[T], section: str, values: dict[str, Any]) -> T:
    fields = cls.__pydantic_fields__  # type: ignore[attr-defined]
    try:
        return cls(**{k: _coerce(v, fields[k].annotation) if k in fields else v for k, v in values.items()})
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0])
        name, value = f"{section}.{field}" if section else field, values.get(field)
        if field not in fields:
            check_known({name: value})
        info = fields[field]
        marked = [m for m in [*info.metadata, *_leaves(info.annotation)] if isinstance(m, Expected)]
        if marked:
            raise ParamError(name, value, marked[0].text) from None
        schema = TypeAdapter(cls).json_schema()["properties"][field]
        if "enum" in schema and not isinstance(value, (list, tuple)):
            raise unknown_choice(name, value, schema["enum"]) from None
        raise ParamError(name, value, describe(schema)) from None


def describe(schema: Mapping[str, Any]) -> str:
    """What a value of this JSON Schema is, in words: ``an integer >= 1``, ``a list of 3 numbers > 0``."""
    branches = schema.get("anyOf", [schema])
    node = next((b for b in branches if b.get("type") != "null"), schema)
    kind = node.get("type")
    if kind == "array":
        item = (node.get("prefixItems") or [node.get("items", {})])[0]
        if "enum" in item:
            text = "a non-empty list of distinct values from " + ", ".join(item["enum"])
        else:
            count = len(node["prefixItems"]) if "prefixItems" in node else "N"
            noun = "integers" if item.get("type") == "integer" else "numbers"
            text = f"a list of {count} {noun}{_range_text(item)}"
    elif "enum" in node:
        text = "one of " + ", ".join(map(str, node["enum"]))
    else:
        words = {"integer": "an integer", "number": "a number", "boolean": "true or false"}
        text = words.get(str(kind), "a non-empty string") + _range_text(node)
    return text + (" or null" if any(b.get("type") == "null" for b in branches) else "")


def _range_text(node: Mapping[str, Any]) -> str:
    low, high, open_ = (
        node.get("exclusiveMinimum", node.get("minimum")),
        node.get("maximum"),
        "exclusiveMinimum" in node,
    )
    if low is not None and high is not None:
        return f" in {'(' if open_ else '['}{low}, {high}]"
    return f" {'>' if open_ else '>='} {low}" if low is not None else ("" if high is None else f" <= {high}")
