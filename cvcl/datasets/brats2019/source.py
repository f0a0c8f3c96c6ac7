"""The files of the user's copy of BraTS 2019 that make ``brats2019``'s raw form.

Copied into ``data/raw`` by :mod:`cvcl.sources.local`; the case folders are found as
:func:`cvcl.sources.layouts.find_brats_cases` describes.
"""

from __future__ import annotations

from pathlib import Path

from cvcl.datasets.spec import CopyPlan
from cvcl.sources.layouts import find_brats_cases


def layout(root: Path) -> CopyPlan:
    """Every file of every BraTS case folder below ``root``, kept at its path (``HGG/``, ``LGG/``)."""
    cases = find_brats_cases(root)
    files = {path.relative_to(root).as_posix(): path for kinds in cases.values() for path in kinds.values()}
    return CopyPlan(files, list(cases), root)
