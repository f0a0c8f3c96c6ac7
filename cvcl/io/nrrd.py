"""Reading and writing NRRD volumes (the LA challenge's original format) with their geometry, via pynrrd.

NRRD states positions in the coordinate system its ``space`` field names, usually
``left-posterior-superior`` (LPS, ITK's own convention). The project's affines are RAS, as NIfTI's,
so the voxel-to-world matrix of the NRRD is computed in its space and then the axes that point
the other way are negated:

- ``space directions`` (one row per array axis: that axis's step in mm, in ``space``) form the
  columns of the 3x3 part, ``space origin`` the translation;
- LPS (and any space without a stated handedness, ``scanner-xyz`` or no ``space`` field, which ITK
  also reads as LPS) flips x and y; LAS flips x; RAS is kept;
- a header with only ``spacings`` is axis-aligned with the origin at zero, and one with neither
  has 1 mm voxels: exactly what ITK-SNAP and 3D Slicer assume, so a prediction written with this
  affine overlays the NRRD in them.
"""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np

from cvcl.errors import DataError
from cvcl.io.atomic import atomic_path
from cvcl.io.volume import Geometry, float3

# handedness of each NRRD space relative to RAS: the sign to apply to x, y, z
_TO_RAS = {
    "right-anterior-superior": (1, 1, 1),
    "RAS": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "LAS": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "LPS": (-1, -1, 1),
}
_ITK_DEFAULT = (-1, -1, 1)  # spaces without a stated orientation: ITK treats them as LPS


def nrrd_affine(header: dict, shape: tuple[int, ...]) -> np.ndarray:
    """The 4x4 RAS voxel-to-world matrix of a 3D NRRD ``header`` (see the module docstring)."""
    space = header.get("space")
    signs = np.array(_TO_RAS.get(space, _ITK_DEFAULT) if space else _ITK_DEFAULT, dtype=np.float64)
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        d = np.asarray(directions, dtype=np.float64)
        if d.shape != (3, 3) or not np.isfinite(d).all():
            raise ValueError(f"'space directions' {d.tolist()} is not three 3D vectors")
        affine[:3, :3] = d.T  # row i of the header is the step along array axis i
        origin = header.get("space origin")
        if origin is not None:
            affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    elif header.get("spacings") is not None:
        spacings = np.asarray(header["spacings"], dtype=np.float64)
        if spacings.shape != (3,) or not np.isfinite(spacings).all() or (spacings <= 0).any():
            raise ValueError(f"'spacings' {spacings.tolist()} are not three positive numbers")
        affine[:3, :3] = np.diag(spacings)
    affine[:3] *= signs[:, None]
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("the voxel axes are degenerate (zero volume)")
    return affine


def read_nrrd(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read a 3D NRRD as float32 ``(X, Y, Z)`` (the file's axis order) with its RAS geometry.

    Raises :class:`DataError` naming the file if it is missing, truncated, corrupt or not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found")
    try:
        data, header = nrrd.read(str(path), index_order="F")
    except Exception as exc:  # pynrrd raises NRRDError, zlib.error, EOFError, ValueError, ...
        raise DataError(path, f"is not a readable NRRD file ({type(exc).__name__}: {exc})") from None
    if data.ndim != 3:
        raise DataError(path, f"expected a 3D volume, got shape {data.shape}")
    try:
        affine = nrrd_affine(header, data.shape)
    except ValueError as exc:
        raise DataError(path, f"has an unusable geometry: {exc}") from None
    spacing = float3(np.linalg.norm(affine[:3, :3], axis=0))
    return np.asarray(data, dtype=np.float32), Geometry(spacing, affine)


def write_nrrd(path: str | Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a 3D ``data`` array ``(X, Y, Z)`` as a gzipped NRRD whose geometry is the RAS
    ``affine``, stated in LPS as ITK writes it (atomically). :func:`read_nrrd` of the file gives
    back ``affine``; ITK-SNAP and 3D Slicer place it where a NIfTI with that affine goes."""
    lps = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)[:3]
    header = {
        "space": "left-posterior-superior",
        "space directions": lps[:, :3].T,
        "space origin": lps[:, 3],
        "kinds": ["domain"] * 3,
        "encoding": "gzip",
    }
    with atomic_path(path) as tmp:
        nrrd.write(str(tmp), np.asarray(data), header, index_order="F")
