"""``la-nrrd``: the user's copy of the 2018 LA challenge's original NRRD files.

Copied by :mod:`cvcl.sources.local` (``download.local_path``, a folder or the challenge's zip)
as :func:`layout` names; split by UA-MT's lists (as ``la``); converted as UA-MT made its h5
release (:mod:`cvcl.preprocessing.la_nrrd`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cvcl.datasets import Dataset, converter, local_copy, published_training_cases
from cvcl.datasets.la import UA_MT

if TYPE_CHECKING:
    from cvcl.sources.local import CopyPlan


def layout(root: Path) -> CopyPlan:
    """``<case>/lgemri.nrrd`` and ``<case>/laendo.nrrd`` of every case below ``root``, copied to
    ``data/raw/<case>/``."""
    from cvcl.sources.layouts import LA_NRRD_IMAGE, LA_NRRD_LABEL, find_la_nrrd_cases
    from cvcl.sources.local import CopyPlan

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


DATASET = Dataset(
    name="la-nrrd",
    description="your copy of the 2018 LA challenge's original NRRD data, converted as UA-MT did",
    order=3,
    labels=(0, 1),  # background, atrium (the converter maps the NRRD's 255 to 1)
    writer=local_copy("la-nrrd"),
    iter_cases=converter("cvcl.preprocessing.la_nrrd"),
    training_cases=published_training_cases("la-nrrd"),
    published=UA_MT,
    layout=layout,
)
