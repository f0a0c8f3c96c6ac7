"""Resampling a case to a target voxel spacing, and a prediction back to the source grid.

Grid convention (the same both ways, so that going there and back is exact in geometry): a
volume of ``n`` voxels at spacing ``s`` is resampled to ``m = max(1, round(n * s / t))`` voxels
covering the same physical extent, so the new spacing is ``s * n / m`` (within half a voxel of
the target ``t``) and new voxel ``j`` is centred on old voxel coordinate
``(j + 0.5) * n / m - 0.5``: PyTorch's ``interpolate(..., align_corners=False)``. The image is
interpolated trilinearly; the label by resampling its one-hot encoding trilinearly and taking
the arg-max, which keeps thin structures better than nearest neighbour and never invents a
class. Predictions go back the same way (class probabilities, then arg-max).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from cvcl.io.volume import Case, Geometry, float3, int3


def target_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, int, int]:
    """Voxels per axis after resampling ``shape`` at ``spacing`` (mm) to ``target`` (mm)."""
    return int3(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target, strict=True))


def resampled_geometry(geometry: Geometry, shape: Sequence[int], new_shape: Sequence[int]) -> Geometry:
    """The geometry of the resampled array: spacing, affine (same world extent), and the
    source grid it came from (``source_shape``, ``source_affine``, ``source_spacing``)."""
    factors = np.array([n / m for n, m in zip(shape, new_shape, strict=True)], dtype=np.float64)
    voxel_map = np.eye(4)
    voxel_map[:3, :3] = np.diag(factors)
    voxel_map[:3, 3] = 0.5 * factors - 0.5
    return replace(
        geometry,
        spacing=float3(s * f for s, f in zip(geometry.spacing, factors, strict=True)),
        affine=geometry.affine @ voxel_map,
        source_shape=int3(shape),
        source_affine=np.asarray(geometry.affine, dtype=np.float64).copy(),
        source_spacing=float3(geometry.spacing),
    )


def resize_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resize of ``(C, X, Y, Z)`` float32 to ``(C, *shape)``."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    return F.interpolate(x, size=tuple(shape), mode="trilinear", align_corners=False)[0].numpy()


def resize_probabilities(probs: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Trilinear resize of class probabilities ``(K, X, Y, Z)`` (any device) to ``(K, *shape)``."""
    if tuple(probs.shape[-3:]) == tuple(shape):
        return probs
    return F.interpolate(probs[None].float(), size=tuple(shape), mode="trilinear", align_corners=False)[0]


def resize_label(label: np.ndarray, shape: Sequence[int], n_classes: int | None = None) -> np.ndarray:
    """Resize a label map ``(X, Y, Z)`` by its one-hot encoding (trilinear, then arg-max)."""
    k = int(label.max()) + 1 if n_classes is None else n_classes
    onehot = F.one_hot(torch.from_numpy(label.astype(np.int64)), max(k, 2)).permute(3, 0, 1, 2).float()
    return resize_probabilities(onehot, shape).argmax(0).numpy().astype(label.dtype)


def resample_case(case: Case, target: Sequence[float]) -> Case:
    """``case`` at ``target`` spacing (mm per axis). The label at the source resolution is
    kept as ``source_label``, so evaluation can score against it in the source grid."""
    new_shape = target_shape(case.shape, case.geometry.spacing, target)
    if new_shape == case.shape:
        return case
    label = None if case.label is None else resize_label(case.label, new_shape)
    return replace(
        case,
        image=resize_image(case.image, new_shape),
        label=label,
        geometry=resampled_geometry(case.geometry, case.shape, new_shape),
        source_label=case.label,
    )
