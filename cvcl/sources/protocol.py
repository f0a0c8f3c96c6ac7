"""The case lists that fix a dataset's split, where they came from, and ``protocol.json``.

Every source writes its raw folder with, beside the data,

- ``train.list``, ``test.list`` (and ``val.list`` where the protocol has one): case ids, one a
  line, in protocol order (the first ``labeled`` cases of ``train.list`` are the labeled ones);
- ``protocol.json``: which lists these are (``lists``: ``ua-mt``, ``ssl4mis``, ``user``,
  ``generator``, or null), a one-line ``description``, and, when the published lists could not be
  used because the copy lacks some of their cases, ``fallback: "random"`` with the ``reason``.
  The split stage records ``lists`` and any fallback in ``split.json``.

The rule for a local copy (``la-nrrd``, ``brats2019``, ``nifti``): lists the copy brings itself win;
otherwise the published lists the package ships, if the copy holds every case they name;
otherwise, where a published split exists but the copy lacks some of its cases, no lists and
``fallback: "random"``: the split stage then uses a seeded random split (and says so). A dataset
with no published split and no lists of its own (``nifti``) has no fallback: ``split.strategy``
must be set to ``random`` explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cvcl.errors import DataError
from cvcl.workspace import LIST_NAMES, PROTOCOL_FILE, parse_ids, read_list

if TYPE_CHECKING:
    from cvcl.datasets.spec import Published

SHIPPED = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class CaseLists:
    """A named set of case lists: ``lists`` maps ``train``/``val``/``test`` to case ids in order."""

    name: str | None
    description: str
    lists: dict[str, list[str]]

    def cases(self) -> list[str]:
        return [c for subset in ("train", "val", "test") for c in self.lists.get(subset, [])]

    def restricted(self, keep: Iterable[str], description: str) -> CaseLists:
        """The same lists, in the same order, with only the cases in ``keep``."""
        keep = set(keep)
        return CaseLists(self.name, description, {k: [c for c in v if c in keep] for k, v in self.lists.items()})


def parse_lists(texts: dict[str, str], where: str) -> dict[str, list[str]]:
    """Lists from the text of ``train.list`` etc. (``texts`` maps file names to contents)."""
    lists = {name.removesuffix(".list"): parse_ids(text, f"{where}/{name}") for name, text in texts.items()}
    _check_lists(lists, where)
    return lists


def read_lists(folder: Path) -> dict[str, list[str]] | None:
    """The lists a folder brings (``train.list`` and ``test.list``, optional ``val.list``), or None."""
    found = {name: folder / name for name in LIST_NAMES if (folder / name).is_file()}
    if not found:
        return None
    lists = {name.removesuffix(".list"): read_list(path) for name, path in found.items()}
    _check_lists(lists, str(folder))
    return lists


def _check_lists(lists: dict[str, list[str]], where: str) -> None:
    for needed in ("train", "test"):
        if needed not in lists:
            raise DataError(f"{where}/{needed}.list", "not found; a split needs both train.list and test.list")
    owner: dict[str, str] = {}
    for subset, ids in lists.items():
        for case_id in ids:
            if case_id in owner:
                raise DataError(f"{where}/{subset}.list", f"case {case_id} is also in {owner[case_id]}.list")
            owner[case_id] = subset


def shipped(published: Published) -> CaseLists:
    """The published lists a dataset declares it follows (its ``published``, e.g. UA-MT's for
    ``la`` and ``la-nrrd``), as the package ships them in ``data/<published.folder>/``."""
    folder = SHIPPED / published.folder
    lists = {
        subset: read_list(folder / f"{subset}.list")
        for subset in ("train", "val", "test")
        if (folder / f"{subset}.list").is_file()
    }
    return CaseLists(published.lists, published.description, lists)


def write(
    out: Path, dataset: str, lists: CaseLists | None, *, reason: str | None = None, fallback: bool = False
) -> dict:
    """Write the list files and ``protocol.json`` into ``out``; returns the protocol record.

    ``lists=None`` means no fixed split, ``reason`` says why; with ``fallback`` the split stage
    replaces the missing published split by a seeded random one.
    """
    if lists is not None:
        for subset, ids in lists.lists.items():
            (out / f"{subset}.list").write_text("".join(f"{c}\n" for c in ids))
    record = {
        "dataset": dataset,
        "lists": lists.name if lists is not None else None,
        "description": lists.description if lists is not None else "no fixed split",
        "counts": {k: len(v) for k, v in lists.lists.items()} if lists is not None else {},
        "fallback": "random" if lists is None and fallback else None,
        "reason": reason,
    }
    (out / PROTOCOL_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def settle(
    out: Path,
    dataset: str,
    present: Iterable[str],
    own: dict[str, list[str]] | None,
    own_where: str,
    published: CaseLists | None,
) -> dict:
    """Choose the lists of a local copy by the rule in the module docstring and write them.

    ``present``: the case ids the copy holds; ``own``: the lists it brings (or None);
    ``own_where``: where those came from, for error messages.
    """
    present = set(present)
    if own is not None:
        for subset, ids in own.items():
            missing = [c for c in ids if c not in present]
            if missing:
                raise DataError(
                    f"{own_where}/{subset}.list",
                    f"names {len(missing)} cases the copy does not hold, e.g. {missing[0]}",
                )
        return write(out, dataset, CaseLists("user", f"the lists that came with the data ({own_where})", own))
    if published is None:
        return write(out, dataset, None, reason="the data brings no train.list/test.list; set split.strategy: random")
    missing = [c for c in published.cases() if c not in present]
    if not missing:
        return write(out, dataset, published)
    total = len(published.cases())
    reason = (
        f"{len(missing)} of the {total} cases of {published.description} are missing "
        f"(e.g. {missing[0]}): a seeded random split (split.seed) replaces it"
    )
    return write(out, dataset, None, reason=reason, fallback=True)
