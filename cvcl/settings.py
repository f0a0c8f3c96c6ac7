"""Every parameter of params.yaml: the sections that declare them, and the table made from them.

Each section of params.yaml is one frozen dataclass, kept in the room that reads it (``train``:
:class:`cvcl.training.config.TrainConfig`, ``loss``: :class:`cvcl.methods.LossConfig`, ...), and
each of its fields is declared once with :func:`setting`: default, help, range, choices and
whether it only chooses where a stage runs (``execution``). A field's kind is read from its
annotation (``int``, ``tuple[int, int, int]``, ``str | None``; :data:`PathText` and
:data:`Spacing` for the two kinds a type alone cannot tell). Fields made without
:func:`setting` are not parameters: a stage supplies them (a network's ``in_channels``).

:data:`SECTIONS` lists the sections in params.yaml's order and :data:`SETTINGS` is produced from
them: one :class:`Setting` per dotted key. ``params.yaml`` must agree with it key for key, its
comments with the help (tested), and a key that is not declared stops the first stage that loads
the params, with the closest valid name (:func:`check_known`), so a misspelt key, in params.yaml
or as ``dvc exp run -S +key=...``, can never be ignored in silence.

Sections and the ``choices`` that name another module's registry (``"module:NAME"``, a sequence
or a function returning one) are named as strings and imported when first used: the rooms import
this module to declare their sections, so it must not import them, and asking for one setting
imports only the section that declares it (resolving ``dataset``'s choices loads no
preprocessing or download machinery). Every section module is light for the same reason: no
torch, h5py or nibabel when it is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Annotated, Any

from cvcl.errors import ParamError, closest

# A file-system path or URL (``~`` expanded when read); a spacing in mm, one value or [x, y, z].
PathText = Annotated[str, "path"]
Spacing = Annotated[tuple[float, float, float], "spacing"]

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

_DECLARED = "cvcl.setting"  # the metadata key under which setting() keeps a field's declaration


@dataclass(frozen=True)
class Setting:
    """One parameter. ``kind``: int, float, bool, str, choice, ints, floats, choices, path, spacing."""

    kind: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    length: int | None = None
    choices: tuple[str, ...] | str = ()
    optional: bool = False
    execution: bool = False  # where and how fast a stage runs, not what it computes

    def allowed(self) -> tuple[str, ...]:
        if isinstance(self.choices, str):
            module, name = self.choices.split(":")
            registry = getattr(importlib.import_module(module), name)
            return tuple(registry() if callable(registry) else registry)
        return self.choices


@dataclass(frozen=True)
class _Declaration:
    """What :func:`setting` records of a field; the kind, length and optionality come from the
    annotation and the default from the field when the section is read (:func:`declared`)."""

    help: str
    min: float | None
    max: float | None
    min_exclusive: bool
    choices: tuple[str, ...] | str
    execution: bool


def setting(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    choices: tuple[str, ...] | str = (),
    execution: bool = False,
) -> Any:
    """Declare a dataclass field as a parameter of its section.

    ``default`` must be immutable (a tuple for a list; params.yaml shows it as a list);
    ``help`` is one line with the unit, and params.yaml's comment on the key starts with it;
    ``min``/``max`` bound a number or every item of a list (``min_exclusive``: ``> min``);
    ``choices`` are the valid strings, or ``"module:NAME"`` naming a registry; ``execution``:
    the value chooses where or how fast a stage runs, not what it computes (a resumed training
    may change it, and run comparisons ignore it).
    """
    declaration = _Declaration(help, min, max, min_exclusive, choices, execution)
    return dataclasses.field(default=default, metadata={_DECLARED: declaration})


@dataclass(frozen=True)
class ExperimentConfig:
    """The top-level keys: what one experiment trains, on which data, with which seed."""

    dataset: str = setting("synthetic-la", "which dataset", choices="cvcl.datasets:names")
    labeled: int = setting(4, "labeled training volumes: the first N of the training list", min=1)
    seed: int = setting(1, "training seed (weights, sampling, augmentation)", min=0)
    method: str = setting("cvcl", "the training method", choices="cvcl.methods:names")


# -- producing the table from the sections ----------------------------------------------------
_ITEM_KINDS = {int: "ints", float: "floats", str: "choices"}
_SCALAR_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


def _kind(annotation: Any, where: str) -> tuple[str, int | None, bool]:
    """``(kind, length, optional)`` of a field annotated ``annotation`` (``where`` names it in errors)."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(rest) < len(typing.get_args(annotation))
        if len(rest) != 1:
            raise TypeError(f"{where}: a parameter has one type (or that type | None), not {annotation}")
        annotation = rest[0]
    marked = None
    if typing.get_origin(annotation) is Annotated:
        annotation, marked = typing.get_args(annotation)[:2]
    length = None
    if typing.get_origin(annotation) is tuple:
        items = typing.get_args(annotation)
        length = None if items[-1] is Ellipsis else len(items)
        kind = _ITEM_KINDS.get(items[0])
    else:
        kind = _SCALAR_KINDS.get(annotation)
    if marked is not None:
        kind, length = marked, None
    if kind is None:
        raise TypeError(f"{where}: no parameter kind for {annotation}")
    return kind, length, optional


def declared(cls: type, prefix: str = "") -> dict[str, Setting]:
    """The settings the dataclass ``cls`` declares, by dotted name under ``prefix``, in field order.

    A field holding a dataclass is a nested section (``preprocess.crop``); a field made without
    :func:`setting` is not a parameter.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    found: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.name}" if prefix else f.name
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            found.update(declared(hint, name))
            continue
        d = f.metadata.get(_DECLARED)
        if d is None:
            continue
        kind, length, optional = _kind(hint, f"{cls.__qualname__}.{f.name}")
        if kind == "str" and d.choices:
            kind = "choice"
        if kind == "choices" and not d.choices:
            raise TypeError(f"{cls.__qualname__}.{f.name}: a list of strings needs its choices")
        default = list(f.default) if isinstance(f.default, tuple) else f.default  # as params.yaml holds it
        found[name] = Setting(
            kind, default, d.help, d.min, d.max, d.min_exclusive, length, d.choices, optional, d.execution
        )
    return found


def _resolve(target: str) -> type:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _holds(prefix: str, name: str) -> bool:
    """Whether the section at ``prefix`` may declare the dotted ``name``."""
    return name.startswith(prefix + ".") if prefix else "." not in name


class _Table(Mapping[str, Setting]):
    """:data:`SETTINGS`: read section by section from :data:`SECTIONS` as names are asked for."""

    def __init__(self, sections: tuple[tuple[str, str], ...]) -> None:
        self._sections = sections
        self._read: dict[str, dict[str, Setting]] = {}

    def _section(self, prefix: str, target: str) -> dict[str, Setting]:
        if prefix not in self._read:
            self._read[prefix] = declared(_resolve(target), prefix)
        return self._read[prefix]

    def __getitem__(self, name: str) -> Setting:
        for prefix, target in self._sections:
            if _holds(prefix, name) and name in (section := self._section(prefix, target)):
                return section[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        for prefix, target in self._sections:
            yield from self._section(prefix, target)

    def __len__(self) -> int:
        return sum(len(self._section(prefix, target)) for prefix, target in self._sections)


class _Execution(Set[str]):
    """:data:`EXECUTION`: the names whose setting is ``execution``; any other name is not in it."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in SETTINGS and SETTINGS[name].execution

    def __iter__(self) -> Iterator[str]:
        return (name for name, s in SETTINGS.items() if s.execution)

    def __len__(self) -> int:
        return sum(1 for _ in self)


SETTINGS: Mapping[str, Setting] = _Table(SECTIONS)

# Parameters that choose where and how fast a stage runs: a resumed training may change them,
# and a comparison of runs does not tell configurations apart by them.
EXECUTION: Set[str] = _Execution()


def section_class(prefix: str) -> type:
    """The dataclass declaring the section at ``prefix`` (``"train"``; ``""``: the top-level keys)."""
    for p, target in SECTIONS:
        if p == prefix:
            return _resolve(target)
    raise KeyError(prefix)


def prefix_of(cls: type) -> str:
    """The dotted prefix ``cls`` is declared under in :data:`SECTIONS` (``""`` for the top level)."""
    name = f"{cls.__module__}:{cls.__qualname__}"  # by name: finding it imports no other section
    for prefix, target in SECTIONS:
        if target == name:
            return prefix
    raise KeyError(f"{cls.__qualname__} declares no section of params.yaml")


def params_keys(classes: Iterable[type]) -> list[str]:
    """The top-level keys of params.yaml that hold the sections ``classes`` (in that order, each
    once): a top-level section gives its own keys, ``model`` gives ``model``, ``download.synthetic``
    gives ``download``; what :meth:`cvcl.params.Params.flat` takes."""
    keys: list[str] = []
    for cls in classes:
        prefix = prefix_of(cls)
        for key in list(declared(cls)) if not prefix else [prefix.split(".")[0]]:
            if key not in keys:
                keys.append(key)
    return keys


def default(name: str) -> Any:
    """The declared default of ``name`` (lists as tuples, as the frozen dataclasses hold them)."""
    value = SETTINGS[name].default
    return tuple(value) if isinstance(value, list) else value


def check_known(flat: Mapping[str, Any], source: str = "params.yaml") -> None:
    """Raise :class:`ParamError` for the first key of ``flat`` (dotted names) that is not declared."""
    for name, value in flat.items():
        if name not in SETTINGS:
            near = closest(name, SETTINGS)
            hint = f"; did you mean {near}?" if near else ""
            raise ParamError(name, value, f"a known parameter: {source} has no such key{hint}")
