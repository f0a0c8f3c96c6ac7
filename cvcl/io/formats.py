"""A volume file by its suffix: NIfTI (``.nii.gz``, ``.nii``) or NRRD (``.nrrd``), read with its
geometry and written with a voxel-to-world matrix, so callers that take either format (new scans,
reference labels, predictions in their scan's format) name the file and nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvcl.io.nrrd import read_nrrd, write_nrrd
from cvcl.io.volume import Geometry, read_nifti, write_nifti

VOLUME_SUFFIXES = {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd"}


def volume_format(path: str | Path) -> str | None:
    """``"nifti"`` or ``"nrrd"`` for a file of that suffix (any case), else None."""
    name = Path(path).name.lower()
    return next((kind for suffix, kind in VOLUME_SUFFIXES.items() if name.endswith(suffix)), None)


def read_volume(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """The array (float32, the file's axis order) and RAS geometry of a NIfTI or NRRD file."""
    return read_nrrd(path) if volume_format(path) == "nrrd" else read_nifti(path)


def write_volume(path: str | Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write ``data`` with the RAS ``affine`` as NRRD or gzipped NIfTI, by ``path``'s suffix (atomically)."""
    (write_nrrd if volume_format(path) == "nrrd" else write_nifti)(path, data, affine)
