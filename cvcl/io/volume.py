"""The processed case convention and NIfTI reading and writing with geometry.

A processed case is one HDF5 file ``<case_id>.h5`` holding

- ``image``: float32, shape ``(X, Y, Z)`` for one channel or ``(C, X, Y, Z)`` for several,
  z-scored by preprocessing;
- ``label``: uint8, shape ``(X, Y, Z)``, values in {0, 1};
- attributes ``spacing`` (3 floats, mm per voxel along X, Y, Z), ``affine`` (4x4 voxel-to-world
  matrix of this array, RAS+ as NIfTI uses it), ``source`` (dataset name), and, where
  preprocessing cropped the volume, ``crop_origin`` and ``original_shape`` (voxels) plus
  ``original_affine`` so predictions can be written back into the source volume's grid;
- where preprocessing resampled the volume (``preprocess.resample``): attributes
  ``source_shape``, ``source_spacing`` and ``source_affine`` (the array before resampling) and
  the dataset ``source_label`` (the label at that resolution, what evaluation scores against).

Arrays keep the axis order of the source (NIfTI/NRRD ``X, Y, Z``; the LA h5 release uses the same),
so a prediction written with the stored affine overlays its image in ITK-SNAP or 3D Slicer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, SupportsFloat, SupportsInt

import h5py
import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from cvcl.errors import DataError
from cvcl.io.atomic import atomic_path

# The three grids a case's arrays live on, from the network's outward:
# - "network": the processed case's own array (after resampling and cropping), what the network sees;
# - "source": before ``preprocess.resample`` (still cropped), what evaluation scores against;
# - "original": the whole source volume before cropping, what prediction files are written in.
Grid = Literal["network", "source", "original"]


def int3(values: Iterable[SupportsInt]) -> tuple[int, int, int]:
    """Three numbers (a shape, a voxel offset) as a tuple of ints."""
    x, y, z = values
    return int(x), int(y), int(z)


def float3(values: Iterable[SupportsFloat]) -> tuple[float, float, float]:
    """Three numbers (a spacing in mm) as a tuple of floats."""
    x, y, z = values
    return float(x), float(y), float(z)


@dataclass
class Geometry:
    """Where an array sits in the world: spacing in mm and the voxel-to-world affine."""

    spacing: tuple[float, float, float]
    affine: np.ndarray
    crop_origin: tuple[int, int, int] | None = None
    original_shape: tuple[int, int, int] | None = None
    original_affine: np.ndarray | None = None
    source_shape: tuple[int, int, int] | None = None  # before resampling (None: not resampled)
    source_affine: np.ndarray | None = None
    source_spacing: tuple[float, float, float] | None = None

    @property
    def resampled(self) -> bool:
        return self.source_shape is not None

    @classmethod
    def from_spacing(cls, spacing: tuple[float, float, float]) -> Geometry:
        """Axis-aligned geometry with the given spacing and the origin at zero."""
        return cls(float3(spacing), np.diag([*map(float, spacing), 1.0]))

    def cropped(self, origin: tuple[int, int, int], original_shape: tuple[int, int, int]) -> Geometry:
        """The geometry of the sub-array that starts at voxel ``origin`` of this array."""
        shift = np.eye(4)
        shift[:3, 3] = origin
        return Geometry(self.spacing, self.affine @ shift, int3(origin), int3(original_shape), self.affine.copy())


@dataclass
class Case:
    """One processed case: image ``(C, X, Y, Z)`` float32, label ``(X, Y, Z)`` uint8."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    geometry: Geometry
    source: str = ""
    extra: dict = field(default_factory=dict)
    source_label: np.ndarray | None = None  # the label before resampling (source resolution)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape[-3:])

    def source_grid(self) -> tuple[tuple[int, int, int], tuple[float, float, float], np.ndarray | None]:
        """Shape (voxels), spacing (mm) and label of the case before resampling (its own when
        not resampled): the grid predictions are scored on. The label needs
        ``read_case(..., load_source_label=True)`` for a resampled case."""
        g = self.geometry
        if g.source_shape is not None:  # resampled
            assert g.source_spacing is not None  # set with source_shape (resampled_geometry, read_case)
            return g.source_shape, g.source_spacing, self.source_label
        return self.shape, g.spacing, self.label


def write_case(path: str | Path, case: Case) -> None:
    """Write ``case`` to ``path`` in the processed convention (atomically)."""
    image = case.image[0] if case.image.ndim == 4 and case.image.shape[0] == 1 else case.image
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(
                "image", data=image.astype(np.float32), compression="gzip", compression_opts=1, shuffle=True
            )
            if case.label is not None:
                f.create_dataset("label", data=case.label.astype(np.uint8), compression="gzip", compression_opts=1)
            if case.source_label is not None:
                f.create_dataset(
                    "source_label", data=case.source_label.astype(np.uint8), compression="gzip", compression_opts=1
                )
            g = case.geometry
            f.attrs["case_id"] = case.case_id
            f.attrs["source"] = case.source
            f.attrs["spacing"] = np.asarray(g.spacing, dtype=np.float64)
            f.attrs["affine"] = np.asarray(g.affine, dtype=np.float64)
            if g.crop_origin is not None:
                f.attrs["crop_origin"] = np.asarray(g.crop_origin, dtype=np.int64)
                f.attrs["original_shape"] = np.asarray(g.original_shape, dtype=np.int64)
                f.attrs["original_affine"] = np.asarray(g.original_affine, dtype=np.float64)
            if g.resampled:
                f.attrs["source_shape"] = np.asarray(g.source_shape, dtype=np.int64)
                f.attrs["source_spacing"] = np.asarray(g.source_spacing, dtype=np.float64)
                f.attrs["source_affine"] = np.asarray(g.source_affine, dtype=np.float64)
            for key, value in case.extra.items():
                f.attrs[key] = value


def read_case(path: str | Path, *, load_image: bool = True, load_source_label: bool = False) -> Case:
    """Read a processed case; the image always comes back as ``(C, X, Y, Z)``.

    ``source_label`` (resampled cases only) is read when ``load_source_label`` is set."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "image" not in f:
                raise DataError(path, "has no 'image' dataset")
            image = f["image"][()] if load_image else np.empty((0,) + f["image"].shape[-3:], np.float32)
            label = f["label"][()] if "label" in f else None
            source_label = f["source_label"][()] if load_source_label and "source_label" in f else None
            a = dict(f.attrs)
    except (OSError, KeyError) as exc:
        raise DataError(path, f"cannot be read as a processed case ({exc})") from None
    if load_image and image.ndim == 3:
        image = image[None]
    spacing = float3(a.get("spacing", (1.0, 1.0, 1.0)))
    affine = np.asarray(a["affine"]) if "affine" in a else np.diag([*spacing, 1.0])
    geometry = Geometry(spacing, affine)
    if "crop_origin" in a:
        geometry.crop_origin = int3(a["crop_origin"])
        geometry.original_shape = int3(a["original_shape"])
        geometry.original_affine = np.asarray(a["original_affine"])
    if "source_shape" in a:
        geometry.source_shape = int3(a["source_shape"])
        geometry.source_spacing = float3(a["source_spacing"])
        geometry.source_affine = np.asarray(a["source_affine"])
    return Case(
        str(a.get("case_id", path.stem)),
        image.astype(np.float32, copy=False),
        label,
        geometry,
        str(a.get("source", "")),
        source_label=source_label,
    )


def read_nifti(path: str | Path) -> tuple[np.ndarray, Geometry]:
    """Read a NIfTI volume as float32 ``(X, Y, Z)`` (or ``(X, Y, Z, C)``) with its geometry."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found")
    try:
        img = nib.load(str(path))
        if not isinstance(img, SpatialImage):  # a surface or CIFTI file: no voxel grid
            raise TypeError(f"{type(img).__name__} is not a volume")
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for truncated or corrupt files
        raise DataError(path, f"is not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if data.ndim < 3:
        raise DataError(path, f"expected a 3D volume, got shape {data.shape}")
    zooms = img.header.get_zooms()[:3]
    return data, Geometry(float3(zooms), np.asarray(img.affine, dtype=np.float64))


def nifti_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI-1 image with both qform and sform set to ``affine`` and units in mm.

    Setting both codes matters: ITK (and so ITK-SNAP, 3D Slicer, SimpleITK) reads the qform,
    nibabel prefers the sform; with both equal every viewer places the volume identically.
    """
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


def write_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write ``data`` as a gzipped NIfTI file with ``affine`` (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # nibabel picks compression from the file name, so the temporary name keeps the suffix
        named = tmp.with_name(tmp.name + "".join(path.suffixes))
        nib.save(nifti_image(data, affine), str(named))
        named.replace(tmp)


def to_original_grid(label: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Place a label map of a cropped case back into the source grid.

    ``label`` is on the case's grid before any resampling (``geometry.source_shape`` for a
    resampled case: resample predictions first, see ``cvcl.inference.predictor``). Returns
    ``(array, affine)``: the padded array and the source affine, or the input and its own
    affine when the case was not cropped.
    """
    if geometry.crop_origin is None or geometry.original_shape is None:
        return label, original_affine(geometry)
    full = np.zeros(geometry.original_shape, dtype=label.dtype)
    o = geometry.crop_origin
    full[o[0] : o[0] + label.shape[0], o[1] : o[1] + label.shape[1], o[2] : o[2] + label.shape[2]] = label
    return full, original_affine(geometry)


def original_affine(geometry: Geometry) -> np.ndarray:
    """The voxel-to-world matrix (4x4, mm) of the case's original grid: the uncropped volume's
    when preprocessing cropped it, else the grid before resampling (:func:`to_original_grid`)."""
    if geometry.crop_origin is not None and geometry.original_shape is not None:
        assert geometry.original_affine is not None  # set with crop_origin (Geometry.cropped, read_case)
        return geometry.original_affine
    if geometry.resampled:
        assert geometry.source_affine is not None  # set with source_shape (resampled_geometry, read_case)
        return geometry.source_affine
    return geometry.affine


def from_original_grid(data: np.ndarray, geometry: Geometry, shape: tuple[int, int, int]) -> np.ndarray:
    """The inverse of :func:`to_original_grid`: the part of an array in the original volume's
    grid that a cropped case covers, ``shape`` being the case's grid before resampling
    (:meth:`Case.source_grid`). Raises ValueError when the array does not fit that grid."""
    if geometry.crop_origin is not None:
        o = geometry.crop_origin
        data = data[o[0] : o[0] + shape[0], o[1] : o[1] + shape[1], o[2] : o[2] + shape[2]]
    if data.shape != tuple(shape):
        raise ValueError(f"shape {data.shape} does not match the case's source grid {tuple(shape)}")
    return data
