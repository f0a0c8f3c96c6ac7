"""Checks every source's cases pass before they are written in the processed form."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvcl.errors import DataError


def check_image(path: str | Path, image: np.ndarray) -> None:
    """Reject images that are NaN/inf anywhere or constant (nothing to learn from)."""
    if not np.isfinite(image).all():
        raise DataError(path, "image contains NaN or infinite values")
    if float(image.max()) == float(image.min()):
        raise DataError(path, f"image is constant ({float(image.min())}); expected varying intensities")


def check_label(path: str | Path, label: np.ndarray, allowed: tuple[int, ...] = (0, 1)) -> None:
    """Reject labels with values outside ``allowed`` or non-integer values."""
    if not np.isfinite(label).all() or not np.array_equal(label, np.round(label)):
        raise DataError(path, "label has non-integer values; expected a label map")
    values = np.unique(label.astype(np.int64))
    bad = [int(v) for v in values if v not in allowed]
    if bad:
        raise DataError(path, f"label has values {bad[:5]} outside the expected {list(allowed)}")


def check_same_shape(path: str | Path, image_shape: tuple[int, ...], label_shape: tuple[int, ...]) -> None:
    if tuple(image_shape) != tuple(label_shape):
        raise DataError(path, f"label shape {tuple(label_shape)} differs from image shape {tuple(image_shape)}")
