"""What the generators of the synthetic datasets share: random rotations and smooth random fields.

``synthetic-la`` (:mod:`cvcl.datasets.synthetic_la.source`) bends its chambers and draws its bias
and scar with them; ``synthetic-brats`` (:mod:`cvcl.datasets.synthetic_brats.source`) warps the
brain template and roughens its tumours. Both draw from their own seeded generator, so a case
depends only on its seed and index.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi


def random_rotation(rng: np.random.Generator, max_deg: tuple[float, float, float]) -> np.ndarray:
    """A 3x3 rotation by uniform angles in ``[-m, m]`` degrees about x, then y, then z."""
    ax, ay, az = (np.deg2rad(rng.uniform(-m, m)) for m in max_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Zero-mean, unit-std random field varying over about ``cells`` periods per axis.

    White noise on a coarse grid (4 points per period), blurred there, then trilinearly
    upsampled: the same look as blurring full-resolution noise at a fraction of the cost.
    """
    coarse = tuple(4 * max(1, cells) + 4 for _ in shape)
    low = ndi.gaussian_filter(rng.standard_normal(coarse), 1.5, mode="wrap")
    up = F.interpolate(
        torch.from_numpy(low)[None, None].float(), size=tuple(shape), mode="trilinear", align_corners=True
    )[0, 0].numpy()
    return ((up - up.mean()) / (up.std() + 1e-8)).astype(np.float32)
