"""Registries that find their members themselves: every public module (or sub-package) of a
package exposes one declaration (``DATASET``, ``METHOD``), so adding a member is adding a module
(a method) or a folder (a dataset). Shared by :mod:`cvcl.datasets` and :mod:`cvcl.methods`."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Protocol, TypeVar

from cvcl.errors import unknown_choice


class Member(Protocol):
    """What a registry's members declare: their ``name`` and where they stand (``order``)."""

    @property
    def name(self) -> str: ...

    @property
    def order(self) -> int: ...


T = TypeVar("T", bound=Member)


def discover_members(
    package: str,
    path: Iterable[str],
    attribute: str,
    kind: type[T],
    *,
    named_after_module: bool = False,
    packages: bool = False,
) -> dict[str, T]:
    """``attribute`` of every module of ``package`` (at ``path``) but ``_private`` ones, by its
    ``name``, sorted by ``(order, name)``. With ``packages`` the members are its sub-packages
    only, and its plain modules are the registry's own (its types, its helpers). A member without
    an instance of ``kind`` there, a name declared twice, or (``named_after_module``) a name other
    than the module's, is a TypeError naming the module."""
    found: dict[str, T] = {}
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_") or (packages and not info.ispkg):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        member = getattr(module, attribute, None)
        if not isinstance(member, kind) or (named_after_module and member.name != info.name):
            named = f" named {info.name!r}" if named_after_module else ""
            raise TypeError(
                f"{module.__name__}: a {kind.__name__.lower()} module must define "
                f"{attribute} = {kind.__name__}(...){named}"
            )
        if member.name in found:
            raise TypeError(f"{module.__name__}: {kind.__name__.lower()} {member.name!r} is defined twice")
        found[member.name] = member
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def member(registry: dict[str, T], param: str, name: object) -> T:
    """``registry[name]``; an unknown name is a ParamError on ``param`` suggesting the nearest."""
    if isinstance(name, str) and name in registry:
        return registry[name]
    raise unknown_choice(param, name, registry)
