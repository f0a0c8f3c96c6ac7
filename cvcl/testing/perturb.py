"""Realistic segmentation errors, to exercise and time the metrics on real label maps.

A network's prediction of the left atrium differs from the label in typical ways: a boundary
displaced by a voxel or two, smoothly, inward in some places and outward in others; a small
false-positive blob next to the organ; a missed thin part (a pulmonary vein). This module
makes such a prediction from a label, seeded, so benchmarks and tests can compare metric
implementations on realistic cases without a trained model.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _ball(shape: tuple[int, ...], centre: np.ndarray, radius: float) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def perturbed_prediction(
    label: np.ndarray,
    seed: int,
    *,
    displacement: float = 2.0,
    smoothness: float = 6.0,
    blob_radius: float = 4.0,
    missed_radius: float = 10.0,
) -> np.ndarray:
    """A prediction-like mask ``(X, Y, Z)`` bool made from a non-empty binary ``label`` of the same shape.

    Args:
        label: the reference mask.
        seed: seeds every random choice.
        displacement: standard deviation (voxels) of the boundary shift, a smooth random field.
        smoothness: Gaussian sigma (voxels) of that field: the size of the regions that move together.
        blob_radius: radius (voxels) of the false-positive ball placed 5-12 voxels outside the label.
        missed_radius: radius (voxels) of the ball removed around the label voxel farthest from the
            label's centroid (the tip of a vein, typically).
    """
    label = np.asarray(label, dtype=bool)
    if not label.any():
        raise ValueError("perturbed_prediction needs a non-empty label")
    rng = np.random.default_rng(seed)
    # signed distance (voxels, > 0 inside): adding a field moves the boundary by the field's value
    outside = ndi.distance_transform_edt(~label)
    signed = ndi.distance_transform_edt(label) - outside
    field = ndi.gaussian_filter(rng.standard_normal(label.shape), smoothness)
    field *= displacement / max(float(field.std()), 1e-12)
    pred = signed + field > 0
    # a missed vein-like part: the far tip of the label
    coords = np.argwhere(label)
    tip = coords[np.argmax(((coords - coords.mean(0)) ** 2).sum(1))]
    pred &= ~_ball(label.shape, tip, missed_radius)
    # a false-positive blob near, not on, the organ
    ring = np.argwhere((outside >= 5 + blob_radius) & (outside <= 12 + blob_radius))
    if len(ring):
        pred |= _ball(label.shape, ring[rng.integers(len(ring))], blob_radius)
    return pred
