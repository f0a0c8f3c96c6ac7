"""Every parameter of params.yaml: the sections that declare them, and the table made from them.

Each section is one frozen pydantic dataclass (:data:`SECTION`: unknown keys refused, strict
types, no NaN) in the room that reads it (``train``: :mod:`cvcl.training.config`). A parameter is
``Field(default=..., ge=..., le=..., description=help)``, the help one line with the unit that
params.yaml's comment on the key starts with; a list's items are bounded in its annotation;
choices are a ``Literal`` or ``Annotated[str, Registry("cvcl.methods:names")]`` (imported when
first used); ``json_schema_extra=EXECUTION_ONLY`` marks a value that chooses where or how fast a
stage runs. A field without a description is not a parameter (``in_channels``).

:data:`SETTINGS` is read from :data:`SECTIONS`, section by section as names are asked for (reading
``dataset`` loads no download machinery). params.yaml, its comments, the schema files and the
docs' table are checked against it (:mod:`cvcl.params_schema`); an undeclared key stops the first
stage that loads the params, with the closest valid name (:func:`check_known`).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any

from pydantic import ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

from cvcl.errors import ParamError, closest

# Strict: "8" is no integer, 1 no boolean (cvcl.params makes lists tuples, 6e3 an integer, first).
SECTION = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, defer_build=True)


@dataclasses.dataclass(frozen=True)
class Expected:
    """What a type's error says is expected, where its JSON Schema cannot tell (type metadata)."""

    text: str


# Where each section is declared, in params.yaml's order (``""``: the top-level keys). A section
# nested in another's dataclass (``preprocess.crop`` in PreprocessConfig) is found through it.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("", "cvcl.settings:ExperimentConfig"),
    ("download.synthetic", "cvcl.datasets.synthetic_la:SyntheticLAConfig"),
    ("download.synthetic_brats", "cvcl.datasets.synthetic_brats:SyntheticBraTSConfig"),
    ("download", "cvcl.sources.config:DownloadConfig"),
    ("preprocess", "cvcl.preprocessing.config:PreprocessConfig"),
    ("split", "cvcl.data.split:SplitConfig"),
    ("model", "cvcl.models.config:ModelConfig"),
    ("train", "cvcl.training.config:TrainConfig"),
    ("loss", "cvcl.methods:LossConfig"),
    ("infer", "cvcl.inference.config:InferConfig"),
    ("evaluate", "cvcl.evaluation.config:EvaluateConfig"),
)


# A field's json_schema_extra when its value chooses where or how fast a stage runs, not what it
# computes: a resumed training may change it, and run comparisons ignore it (:func:`is_execution`).
EXECUTION_ONLY: dict[str, Any] = {"x-execution": True}


@dataclasses.dataclass(frozen=True)
class Registry:
    """``Annotated[str, Registry("module:NAME")]``: one of the names a registry lists (a sequence
    or a function returning one), imported when first used."""

    target: str

    def allowed(self) -> tuple[str, ...]:
        module, name = self.target.split(":")
        found = getattr(importlib.import_module(module), name)
        return tuple(found() if callable(found) else found)

    def _check(self, value: str) -> str:
        if value not in self.allowed():
            raise ValueError("not a registered name")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {**handler(schema), "enum": list(self.allowed())}


@dataclass(frozen=True, config=SECTION)
class ExperimentConfig:
    """The top-level keys: what one experiment trains, on which data, with which seed."""

    dataset: Annotated[str, Registry("cvcl.datasets:names")] = Field(
        default="synthetic-la", description="which dataset"
    )
    labeled: int = Field(default=4, ge=1, description="labeled training volumes: the first N of the training list")
    seed: int = Field(default=1, ge=0, description="training seed (weights, sampling, augmentation)")
    method: Annotated[str, Registry("cvcl.methods:names")] = Field(default="cvcl", description="the training method")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One parameter: field ``field`` of the section class ``owner``, its default as params.yaml holds
    it (lists, not tuples), its help (the description) and whether it is :data:`EXECUTION_ONLY`."""

    owner: type
    field: str
    default: Any
    help: str
    execution: bool

    @property
    def info(self) -> FieldInfo:
        return self.owner.__pydantic_fields__[self.field]  # type: ignore[attr-defined]

    def allowed(self) -> tuple[str, ...]:
        """The valid strings of a choice (or of each item of a list of choices); () if none."""
        for m in [*self.info.metadata, *_leaves(self.info.annotation)]:
            if isinstance(m, Registry):
                return m.allowed()
            if typing.get_origin(m) is typing.Literal:
                return typing.get_args(m)
        return ()


def _leaves(annotation: Any) -> Iterator[Any]:
    """The annotation and its arguments, depth first (``tuple[Literal['a'], ...] | None``...)."""
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _leaves(arg)


def declared(cls: type, prefix: str = "") -> dict[str, Setting]:
    """The settings the section ``cls`` declares, by dotted name under ``prefix``, in field order.

    A field holding a section is nested (``preprocess.crop``); a field without a description is
    not a parameter.
    """
    found: dict[str, Setting] = {}
    for name, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
        dotted = f"{prefix}.{name}" if prefix else name
        if hasattr(info.annotation, "__pydantic_fields__"):
            found.update(declared(info.annotation, dotted))
        elif info.description is not None:
            default = list(info.default) if isinstance(info.default, tuple) else info.default
            execution = info.json_schema_extra == EXECUTION_ONLY
            found[dotted] = Setting(cls, name, default, info.description, execution)
    return found


class _Table(Mapping[str, Setting]):
    """:data:`SETTINGS`: read section by section from :data:`SECTIONS` as names are asked for."""

    def __init__(self) -> None:
        self._read: dict[str, dict[str, Setting]] = {}

    def section(self, prefix: str) -> dict[str, Setting]:
        if prefix not in self._read:
            self._read[prefix] = declared(section_class(prefix), prefix)
        return self._read[prefix]

    def __getitem__(self, name: str) -> Setting:
        for prefix, _ in SECTIONS:
            holds = name.startswith(prefix + ".") if prefix else "." not in name
            if holds and name in (section := self.section(prefix)):
                return section[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (name for prefix, _ in SECTIONS for name in self.section(prefix))

    def __len__(self) -> int:
        return sum(1 for _ in self)


SETTINGS: Mapping[str, Setting] = _Table()


def is_execution(name: str) -> bool:
    """Whether ``name`` is declared :data:`EXECUTION_ONLY` (a resume may change it, comparisons ignore it)."""
    return name in SETTINGS and SETTINGS[name].execution


def section_class(prefix: str) -> type:
    """The dataclass declaring the section at ``prefix`` (``"train"``; ``""``: the top-level keys)."""
    module, name = dict(SECTIONS)[prefix].split(":")
    found: type = getattr(importlib.import_module(module), name)
    return found


def prefix_of(cls: type) -> str:
    """The dotted prefix ``cls`` is declared under in :data:`SECTIONS` (``""`` for the top level)."""
    return {target: prefix for prefix, target in SECTIONS}[f"{cls.__module__}:{cls.__qualname__}"]


def params_keys(classes: Iterable[type]) -> list[str]:
    """The top-level keys of params.yaml that hold the sections ``classes`` (in that order, each
    once): a top-level section gives its own keys, ``model`` gives ``model``, ``download.synthetic``
    gives ``download``; what :meth:`cvcl.params.Params.flat` takes."""
    keys = [k for cls in classes for k in (prefix_of(cls).split(".")[:1] if prefix_of(cls) else declared(cls))]
    return list(dict.fromkeys(keys))


def check_known(flat: Mapping[str, Any], source: str = "params.yaml") -> None:
    """Raise :class:`ParamError` for the first key of ``flat`` (dotted names) that is not declared."""
    for name, value in flat.items():
        if name not in SETTINGS:
            near = closest(name, SETTINGS)
            hint = f"; did you mean {near}?" if near else ""
            raise ParamError(name, value, f"a known parameter: {source} has no such key{hint}")
