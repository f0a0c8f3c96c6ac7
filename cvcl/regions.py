"""Extents inside a volume: the bounding box of a mask, and the symmetric padding that brings
an array up to a minimum size. Shared by preprocessing (crops), training (patches),
inference (windows) and evaluation (distance computations on the box only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The tightest box (one slice per axis, stop exclusive) around the True voxels of an
    N-d ``mask``, or None when it is empty."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        if idx.size == 0:
            return None
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def symmetric_pads(shape: Sequence[int], size: Sequence[int]) -> list[tuple[int, int]]:
    """``(before, after)`` voxels per axis that bring ``shape`` up to at least ``size``, split
    evenly (the odd voxel after); zero on axes already long enough."""
    pads = []
    for s, p in zip(shape, size, strict=True):
        extra = max(int(p) - int(s), 0)
        pads.append((extra // 2, extra - extra // 2))
    return pads
