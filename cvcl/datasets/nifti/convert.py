"""Convert a dataset in nnU-Net's raw convention into processed cases.

Layout read (``<case>`` is any id; channels are numbered ``_0000``, ``_0001``, ...)::

    imagesTr/<case>_0000.nii.gz   [imagesTr/<case>_0001.nii.gz ...]
    labelsTr/<case>.nii.gz
    train.list, test.list          optional: the fixed split, one case id a line

Images are z-scored over the whole volume; labels must already be binary {0, 1}.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cvcl.errors import DataError
from cvcl.io.volume import Case, read_nifti
from cvcl.preprocessing.checks import check_image, check_label, check_same_shape
from cvcl.preprocessing.config import PreprocessConfig
from cvcl.preprocessing.normalize import zscore
from cvcl.sources.layouts import NiftiCase, find_nifti_cases


def convert_case(raw_dir: Path, case_id: str, files: NiftiCase, source: str) -> Case:
    """Read, check and normalise one case: image ``(C, X, Y, Z)`` float32, label uint8."""
    channels = []
    geometry = None
    for path in files.images:
        data, geo = read_nifti(path)
        if data.ndim != 3:
            raise DataError(path, f"expected a 3D volume per channel file, got shape {data.shape}")
        check_image(path, data)
        if geometry is not None and data.shape != channels[0].shape:
            raise DataError(path, f"shape {data.shape} differs from channel 0 {channels[0].shape}")
        geometry = geometry or geo
        channels.append(data)
    assert geometry is not None  # a case has at least one image (find_nifti_cases)
    label_path = files.label
    if label_path is None:
        raise DataError(raw_dir / "labelsTr" / f"{case_id}.nii.gz", "not found (every image needs a label)")
    label, _ = read_nifti(label_path)
    check_same_shape(label_path, channels[0].shape, label.shape)
    check_label(label_path, label)
    image = zscore(np.stack(channels))
    return Case(case_id, image, label.astype(np.uint8), geometry, source)


def iter_cases(raw_dir: Path, source: str, config: PreprocessConfig | None = None) -> Iterator[tuple[Case, str]]:
    """Yield ``(case, raw image path relative to raw_dir)`` for every case (``config`` is unused:
    the nnU-Net convention has nothing to choose)."""
    for case_id, files in find_nifti_cases(raw_dir).items():
        yield convert_case(raw_dir, case_id, files, source), str(files.images[0].relative_to(raw_dir))
