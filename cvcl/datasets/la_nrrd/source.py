"""The files of the user's copy of the 2018 LA challenge data that make ``la-nrrd``'s raw form.

Copied into ``data/raw`` by :mod:`cvcl.sources.local`; the case folders are found as
:func:`cvcl.sources.layouts.find_la_nrrd_cases` describes.
"""

from __future__ import annotations

from pathlib import Path

from cvcl.datasets.spec import CopyPlan
from cvcl.sources.layouts import LA_NRRD_IMAGE, LA_NRRD_LABEL, find_la_nrrd_cases


def layout(root: Path) -> CopyPlan:
    """``<case>/lgemri.nrrd`` and ``<case>/laendo.nrrd`` of every case below ``root``, copied to
    ``data/raw/<case>/``."""
    cases = find_la_nrrd_cases(root)
    files = {}
    for case_id, (image, label) in cases.items():
        files[f"{case_id}/{LA_NRRD_IMAGE}"] = image
        files[f"{case_id}/{LA_NRRD_LABEL}"] = label
    # lists brought with the data sit beside the case folders (the zip's "Training Set/"),
    # unless the root itself has them
    parents = {image.parent.parent for image, _ in cases.values()}
    lists_at = parents.pop() if len(parents) == 1 and not (root / "train.list").exists() else root
    return CopyPlan(files, list(cases), lists_at)
