"""``nifti``: the user's own binary task in nnU-Net's raw layout (``imagesTr/``, ``labelsTr/``).

Copied by :mod:`cvcl.sources.local` (``download.local_path``, a folder or an archive) as
:func:`layout` names; no published split (the copy's own lists, or ``split.strategy: random``);
converted by :mod:`cvcl.preprocessing.nifti`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cvcl.datasets import Dataset, converter, local_copy

if TYPE_CHECKING:
    from cvcl.sources.local import CopyPlan


def layout(root: Path) -> CopyPlan:
    """Each case's channel files and label, and ``dataset.json``, of the nnU-Net dataset at
    ``root`` (or in its single dataset sub-folder), kept at their paths below it."""
    from cvcl.sources.layouts import find_nifti_cases, nifti_root
    from cvcl.sources.local import CopyPlan

    root = nifti_root(root)
    cases = find_nifti_cases(root)
    paths = [path for case in cases.values() for path in (*case.images, case.label) if path is not None]
    if (root / "dataset.json").is_file():
        paths.append(root / "dataset.json")
    return CopyPlan({path.relative_to(root).as_posix(): path for path in paths}, list(cases), root)


DATASET = Dataset(
    name="nifti",
    description="your own binary task in nnU-Net's raw convention",
    order=5,
    labels=(0, 1),  # the converter accepts binary labels only
    writer=local_copy("nifti"),
    iter_cases=converter("cvcl.preprocessing.nifti"),
    training_cases=lambda params: None,  # the copy's own lists or a random split: known once preprocessed
    layout=layout,
)
