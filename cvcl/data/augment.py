"""Training-time augmentation of (image, label) pairs (the UA-MT protocol).

Arrays: image ``(C, X, Y, Z)`` float32, label ``(X, Y, Z)`` uint8; every function returns
new arrays and draws its randomness from the ``rng`` it is given.
"""

from __future__ import annotations

import numpy as np

from cvcl.regions import symmetric_pads


def random_rot_flip(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by a random multiple of 90 degrees in the (X, Y) plane, then flip X or Y."""
    k = int(rng.integers(0, 4))
    axis = int(rng.integers(0, 2))
    image = np.flip(np.rot90(image, k, axes=(1, 2)), axis=axis + 1)
    label = np.flip(np.rot90(label, k, axes=(0, 1)), axis=axis)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def pad_to(image: np.ndarray, label: np.ndarray, size: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad (symmetrically) every spatial axis shorter than ``size``."""
    pads = symmetric_pads(label.shape, size)
    if not any(a or b for a, b in pads):
        return image, label
    return np.pad(image, [(0, 0)] + pads), np.pad(label, pads)


def random_crop(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` window (padding first where the volume is smaller)."""
    image, label = pad_to(image, label, size)
    start = [int(rng.integers(0, s - p + 1)) for s, p in zip(label.shape, size, strict=True)]
    window = tuple(slice(a, a + p) for a, p in zip(start, size, strict=True))
    return np.ascontiguousarray(image[(slice(None),) + window]), np.ascontiguousarray(label[window])
