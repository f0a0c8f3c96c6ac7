"""Scans given to ``cvcl predict``: finding them, reading them with their geometry, and writing
each prediction beside the others in its scan's own grid and format.

Accepted inputs (a file, or a folder of them; hidden files and other suffixes are ignored):

- ``.nii.gz`` / ``.nii``: one channel, or several as a 4D NIfTI (channels last); for a
  several-channel model, a folder may also hold one file per channel named as nnU-Net does,
  ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``...;
- ``.nrrd``: one channel per file, the same ``_0000`` naming for several;
- ``.h5``: an already preprocessed case (the pipeline's ``data/processed`` convention, or the
  LA release's ``<case>/mri_norm2.h5``, named for its folder): used as it is, without
  normalising again.

A prediction is written as ``<output>/<name>.nii.gz`` (NRRD inputs: ``<name>.nrrd``) with the
scan's own shape and voxel-to-world matrix, so it overlays the scan in ITK-SNAP and 3D Slicer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cvcl.errors import DataError
from cvcl.io.formats import VOLUME_SUFFIXES, read_volume, write_volume
from cvcl.io.volume import Case, Geometry, read_case

SUFFIXES = {**VOLUME_SUFFIXES, ".h5": "h5"}
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
RELEASE_NAME = "mri_norm2"  # every case file of the LA release is <case>/mri_norm2.h5


@dataclass(frozen=True)
class Scan:
    """One scan to segment: its name (the output's), its files (one per channel, or one), their format."""

    name: str
    files: tuple[Path, ...]
    kind: str

    @property
    def output_name(self) -> str:
        return f"{self.name}.nrrd" if self.kind == "nrrd" else f"{self.name}.nii.gz"


def split_suffix(path: Path) -> tuple[str, str] | None:
    """``(stem, suffix)`` of a file with an accepted suffix, else None."""
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return None


def find_scans(path: str | Path, channels: int) -> list[Scan]:
    """The scans at ``path`` (a file or a folder), sorted by name, for a model of ``channels`` channels."""
    path = Path(path)
    expected = "a .nii.gz, .nii, .nrrd or .h5 file, or a folder of them"
    if path.is_file():
        parts = split_suffix(path)
        if parts is None:
            raise DataError(path, f"is not a scan this tool reads; expected {expected}")
        name = path.parent.name if parts[0] == RELEASE_NAME and path.parent.name else parts[0]
        return [Scan(name, (path,), SUFFIXES[parts[1]])]
    if not path.is_dir():
        raise DataError(path, f"not found; expected {expected}")
    files = sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and split_suffix(p) is not None
    )
    if not files:
        raise DataError(path, f"holds no scans; expected {expected}")
    named = [(p, *parts) for p in files if (parts := split_suffix(p)) is not None]
    groups = [_CHANNEL.match(stem) for _, stem, _ in named]
    if channels > 1 and all(groups):
        by_case: dict[tuple[str, str], list[tuple[int, Path]]] = {}
        for (p, _, suffix), m in zip(named, groups, strict=True):
            assert m is not None  # all(groups)
            by_case.setdefault((m["case"], suffix), []).append((int(m["channel"]), p))
        scans = []
        for (case, suffix), members in sorted(by_case.items()):
            numbers = sorted(n for n, _ in members)
            if numbers != list(range(len(numbers))):
                raise DataError(
                    path / f"{case}_0000{suffix}",
                    f"case {case} has channel files {numbers}; expected 0000, 0001... without gaps",
                )
            scans.append(Scan(case, tuple(p for _, p in sorted(members)), SUFFIXES[suffix]))
        return scans
    return [Scan(stem, (p,), SUFFIXES[suffix]) for p, stem, suffix in named]


def _check_3d(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) < 3 or min(shape[:3]) < 2:
        raise DataError(path, f"is a 2D image (shape {'x'.join(map(str, shape))}); expected a 3D volume")


def _read_one(path: Path) -> tuple[np.ndarray, Geometry]:
    """One file as ``(C, X, Y, Z)`` float32 with its geometry."""
    try:
        data, geometry = read_volume(path)
    except DataError as exc:  # both readers refuse fewer than three axes
        if "expected a 3D volume" in exc.problem:
            raise DataError(path, "is a 2D image; " + exc.problem) from None
        raise
    _check_3d(path, data.shape)
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI stores vector volumes as (X, Y, Z, 1, C)
        data = data[:, :, :, 0]
    if data.ndim > 4:
        raise DataError(path, f"has shape {data.shape}; expected (X, Y, Z) or (X, Y, Z, channels)")
    return (np.moveaxis(data, 3, 0) if data.ndim == 4 else data[None]), geometry


def read_scan(scan: Scan, channels: tuple[str, ...]) -> tuple[np.ndarray, Geometry]:
    """A NIfTI or NRRD scan as ``(C, X, Y, Z)`` float32 and its geometry; DataError naming the file
    when it is unreadable, not 3D, not finite, or has another channel count than ``channels``."""
    images, geometry = [], None
    for path in scan.files:
        data, geo = _read_one(path)
        if geometry is None:
            geometry = geo
        elif data.shape[1:] != images[0].shape[1:] or not np.allclose(geo.affine, geometry.affine, atol=1e-3):
            raise DataError(path, f"does not share the grid of {scan.files[0].name} (shape or geometry differs)")
        images.append(data)
    image = np.concatenate(images)
    if image.shape[0] != len(channels):
        how = (
            f"one file per channel named {scan.name}_0000, {scan.name}_0001... or a 4D NIfTI"
            if len(channels) > 1
            else "a single-channel 3D volume"
        )
        raise DataError(
            scan.files[0],
            f"has {image.shape[0]} channel(s); the model expects {len(channels)} ({', '.join(channels)}): give {how}",
        )
    if not np.isfinite(image).all():
        raise DataError(scan.files[0], "contains NaN or infinite values")
    assert geometry is not None  # a scan has at least one file
    return image, geometry


def read_preprocessed(scan: Scan, channels: int) -> Case:
    """An ``.h5`` scan as a processed case: the pipeline's convention when the file states its
    geometry, else the LA release's format, read as the ``la`` converter reads it (0.625 mm
    voxels, axis-aligned)."""
    from cvcl.datasets.la.convert import read_release_case

    path = scan.files[0]
    try:
        with h5py.File(path, "r") as f:
            located = "affine" in f.attrs or "spacing" in f.attrs
    except OSError as exc:
        raise DataError(path, f"cannot be read as HDF5 ({exc})") from None
    case = read_case(path) if located else read_release_case(path, scan.name, "la")
    _check_3d(path, case.shape)
    if case.image.shape[0] != channels:
        raise DataError(path, f"has {case.image.shape[0]} channel(s); the model expects {channels}")
    return case


def write_prediction(scan: Scan, folder: Path, label: np.ndarray, affine: np.ndarray) -> Path:
    """Write the label map ``(X, Y, Z)`` of ``scan`` into ``folder`` in the scan's format (atomically)."""
    path = folder / scan.output_name
    write_volume(path, label.astype(np.uint8), affine)
    return path
