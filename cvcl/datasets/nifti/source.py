"""The files of the user's nnU-Net raw dataset that make ``nifti``'s raw form.

Copied into ``data/raw`` by :mod:`cvcl.sources.local`; the cases are found as
:func:`cvcl.sources.layouts.find_nifti_cases` describes.
"""

from __future__ import annotations

from pathlib import Path

from cvcl.datasets.spec import CopyPlan
from cvcl.sources.layouts import find_nifti_cases, nifti_root


def layout(root: Path) -> CopyPlan:
    """Each case's channel files and label, and ``dataset.json``, of the nnU-Net dataset at
    ``root`` (or in its single dataset sub-folder), kept at their paths below it."""
    root = nifti_root(root)
    cases = find_nifti_cases(root)
    paths = [path for case in cases.values() for path in (*case.images, case.label) if path is not None]
    if (root / "dataset.json").is_file():
        paths.append(root / "dataset.json")
    return CopyPlan({path.relative_to(root).as_posix(): path for path in paths}, list(cases), root)
