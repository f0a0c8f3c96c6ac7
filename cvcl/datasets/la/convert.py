"""Convert the LA h5 release (``la``) into processed cases.

Layout read: ``2018LA_Seg_Training Set/<case>/mri_norm2.h5`` with ``image`` (float32, X Y Z) and
``label`` (uint8, 0/1). The h5 files carry no geometry: the challenge's voxels are 0.625 mm
isotropic, so each case gets that spacing and an axis-aligned affine with the origin at zero.

Intensities are kept as released, not re-normalised: UA-MT z-scored each volume over the whole
scan *before* cropping it around the atrium (so a released crop has a mean near 1.5 and a std
near 1.6, not 0 and 1), and every published LA result was trained and tested on exactly these
values. Re-z-scoring the crop would change the input distribution the papers' numbers belong to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from cvcl.errors import DataError
from cvcl.io.volume import Case, Geometry
from cvcl.preprocessing.checks import check_image, check_label, check_same_shape
from cvcl.preprocessing.config import PreprocessConfig
from cvcl.sources.layouts import LA_SPACING_MM, find_la_h5_cases


def read_release_case(path: Path, case_id: str, source: str) -> Case:
    """One release file as a processed case (image ``(1, X, Y, Z)`` float32, label uint8)."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("image", "label") if k not in f]
            if missing:
                raise DataError(
                    path,
                    f"has no {' or '.join(repr(k) for k in missing)} dataset; "
                    "expected UA-MT's mri_norm2.h5 (image, label)",
                )
            image = f["image"][()]
            label = f["label"][()]
    except OSError as exc:  # h5py reports truncation and corruption as OSError
        raise DataError(path, f"is not a readable HDF5 file, truncated or corrupt ({exc})") from None
    if image.ndim != 3:
        raise DataError(path, f"image: expected a 3D volume, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number):
        raise DataError(path, f"image has dtype {image.dtype}; expected numbers")
    check_image(path, image)
    check_same_shape(path, image.shape, label.shape)
    check_label(path, label, (0, 1))
    geometry = Geometry.from_spacing((LA_SPACING_MM,) * 3)
    return Case(case_id, image.astype(np.float32)[None], label.astype(np.uint8), geometry, source)


def iter_cases(raw_dir: Path, source: str, config: PreprocessConfig | None = None) -> Iterator[tuple[Case, str]]:
    """Yield ``(case, h5 path relative to raw_dir)`` for every case folder of the release."""
    for case_id, path in find_la_h5_cases(raw_dir).items():
        yield read_release_case(path, case_id, source), path.relative_to(raw_dir).as_posix()
