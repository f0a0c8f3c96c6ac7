"""Bounding boxes and crops of ``(X, Y, Z)`` volumes (voxel indices; ``hi`` is exclusive)."""

from __future__ import annotations

import numpy as np

from cvcl.regions import bounding_box

Box = tuple[tuple[int, int, int], tuple[int, int, int]]


def mask_box(mask: np.ndarray) -> Box | None:
    """``(lo, hi)`` of the True voxels of a 3D ``mask`` (``hi`` exclusive), or None if it is empty."""
    slices = bounding_box(mask)
    if slices is None:
        return None
    x, y, z = slices
    return (x.start, y.start, z.start), (x.stop, y.stop, z.stop)


def grow_box(
    box: Box,
    shape: tuple[int, ...],
    before: tuple[int, int, int],
    after: tuple[int, int, int],
    min_size: tuple[int, int, int] = (0, 0, 0),
) -> Box:
    """``box`` widened by ``before``/``after`` voxels per axis, then evenly to at least
    ``min_size`` (half of the shortfall on each side, as UA-MT does), clipped to ``shape``."""
    lo, hi = [], []
    for a in range(3):
        pad = max(min_size[a] - (box[1][a] - box[0][a]), 0) // 2
        lo.append(max(box[0][a] - before[a] - pad, 0))
        hi.append(min(box[1][a] + after[a] + pad, int(shape[a])))
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    return (x0, y0, z0), (x1, y1, z1)


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """The sub-array of ``box`` over the last three axes (so ``(C, X, Y, Z)`` works too)."""
    (x0, y0, z0), (x1, y1, z1) = box
    return array[..., x0:x1, y0:y1, z0:z1]
