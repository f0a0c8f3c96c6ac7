"""Intensity normalisation of image volumes."""

from __future__ import annotations

import numpy as np


def zscore(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Z-score ``image`` with the mean and std of the voxels in ``mask`` (all voxels if None).

    ``image`` is ``(X, Y, Z)`` or ``(C, X, Y, Z)``; each channel is normalised separately.
    Returns float32. Statistics are accumulated in float64 so large volumes stay exact.
    """
    img = np.asarray(image, dtype=np.float32)
    channels = img[None] if img.ndim == 3 else img
    out = np.empty_like(channels)
    for c, channel in enumerate(channels):
        values = channel[mask] if mask is not None else channel
        mean = values.mean(dtype=np.float64)
        std = values.std(dtype=np.float64)
        out[c] = (channel - mean) / max(std, 1e-8)
    return out[0] if img.ndim == 3 else out


def clip_and_zscore(
    image: np.ndarray, mask: np.ndarray | None = None, clip_percentile: float | None = None
) -> np.ndarray:
    """:func:`zscore` after clipping each channel at ``clip_percentile`` of its ``mask`` voxels
    (no clipping when None). ``image`` is ``(C, X, Y, Z)``; returns float32."""
    image = np.asarray(image, dtype=np.float32)
    if clip_percentile is not None:
        image = image.copy()
        for c in range(len(image)):
            values = image[c][mask] if mask is not None else image[c]
            image[c] = np.minimum(image[c], np.percentile(values, clip_percentile))
    return zscore(image, mask)
