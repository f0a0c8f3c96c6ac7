"""Convert the LA challenge's original NRRD files (``la-nrrd``) as UA-MT made its h5 release.

Layout read: ``<case>/lgemri.nrrd`` (LGE-MRI) and ``<case>/laendo.nrrd`` (0 background, 255 atrium).

Per case, following UA-MT's conversion script:

1. z-score the image over the *whole* scan (before cropping, as UA-MT did);
2. map the label 255 -> 1 (any other value than 0 and 255 stops the stage);
3. crop both around the atrium's bounding box with a random margin per side: ``[10, 20)`` voxels
   in-plane and ``[5, 10)`` through-plane by default (``preprocess.crop``), seeded by
   ``preprocess.crop.seed`` and the case id; the box grows to at least 112x112x80 where the scan
   allows, so the paper's patch fits.

Differences from UA-MT's script, on purpose: the draws are seeded (UA-MT's were not, so its
crops cannot be regenerated); the through-plane margin is applied (UA-MT computed it but sliced
only X and Y, so its release keeps all 88 slices: ``preprocess.crop.margin_through: null`` does
the same); the upper margin counts from the last atrium voxel (UA-MT's from one before it).

The crop is recorded (``Geometry.cropped``) with the NRRD's RAS affine (:mod:`cvcl.io.nrrd`), so
predictions are written back into the full NRRD grid and overlay ``lgemri.nrrd`` in ITK-SNAP.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cvcl.errors import DataError
from cvcl.io.nrrd import read_nrrd
from cvcl.io.volume import Case
from cvcl.preprocessing.checks import check_image, check_label, check_same_shape
from cvcl.preprocessing.config import CropConfig, PreprocessConfig
from cvcl.preprocessing.crop import Box, crop, grow_box, mask_box
from cvcl.preprocessing.normalize import zscore
from cvcl.sources.layouts import find_la_nrrd_cases

ATRIUM = 255


def atrium_box(case_id: str, atrium: np.ndarray, cfg: CropConfig) -> Box:
    """The crop of one case: the atrium's box with seeded random margins (see module docstring)."""
    box = mask_box(atrium)
    assert box is not None
    # one generator per case, keyed by the case id, so a crop never depends on the other cases
    rng = np.random.default_rng([cfg.seed, zlib.crc32(case_id.encode("utf-8"))])
    ranges = [cfg.margin_inplane, cfg.margin_inplane, cfg.margin_through]
    before, after = [], []
    for axis, r in enumerate(ranges):
        if r is None:  # keep the whole axis
            before.append(atrium.shape[axis])
            after.append(atrium.shape[axis])
        else:
            before.append(int(rng.integers(r[0], r[1])))
            after.append(int(rng.integers(r[0], r[1])))
    return grow_box(box, atrium.shape, tuple(before), tuple(after), cfg.min_size)


def convert_case(case_id: str, image_path: Path, label_path: Path, cfg: CropConfig, source: str) -> Case:
    """Read, check, normalise and crop one case."""
    image, geometry = read_nrrd(image_path)
    check_image(image_path, image)
    label, label_geometry = read_nrrd(label_path)
    check_same_shape(label_path, image.shape, label.shape)
    check_label(label_path, label, (0, ATRIUM))
    if not np.allclose(label_geometry.affine, geometry.affine, atol=1e-3):
        raise DataError(label_path, "geometry (space directions / origin) differs from lgemri.nrrd's")
    atrium = label == ATRIUM
    if not atrium.any():
        raise DataError(label_path, "has no atrium voxels (255); cannot crop around the atrium")
    normalised = zscore(image)  # over the whole scan, before the crop
    box = atrium_box(case_id, atrium, cfg)
    return Case(
        case_id,
        crop(normalised, box)[None].copy(),
        crop(atrium, box).astype(np.uint8),
        geometry.cropped(box[0], image.shape),
        source,
    )


def iter_cases(raw_dir: Path, source: str, config: PreprocessConfig | None = None) -> Iterator[tuple[Case, str]]:
    """Yield ``(case, image path relative to raw_dir)`` for every case folder below ``raw_dir``."""
    cfg = (config or PreprocessConfig()).crop
    for case_id, (image, label) in find_la_nrrd_cases(raw_dir).items():
        yield convert_case(case_id, image, label, cfg, source), image.relative_to(raw_dir).as_posix()
