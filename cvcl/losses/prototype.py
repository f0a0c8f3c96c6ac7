"""Class prototypes (confidence-weighted masked average pooling) and prototype predictions.

For features ``z`` on the label grid, a class map ``m`` and confidences ``q``::

    p_c = sum_v q_c(v) [m(v) = c] z(v) / max(sum_v q_c(v) [m(v) = c], eps)

pooled over every image of the batch, so prototypes are defined for any batch composition.
A voxel's prototype prediction is ``softmax_c(scale * cos(z(v), p_c))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample_to(features: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Trilinearly resize ``(B, C, ...)`` features to ``size`` (no-op when already there)."""
    if tuple(features.shape[-3:]) == tuple(size):
        return features
    return F.interpolate(features, size=size, mode="trilinear", align_corners=False)


@torch.no_grad()
def class_prototypes(features: torch.Tensor, classes: torch.Tensor, confidence: torch.Tensor,
                     eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes of the ``K`` classes, detached from the graph.

    Args:
        features: ``(B, C, X, Y, Z)`` on the grid of ``classes``.
        classes: ``(B, X, Y, Z)`` int64 class map (ground truth or pseudo-label).
        confidence: ``(B, K, X, Y, Z)`` class probabilities weighting each voxel.
    Returns:
        ``(K, C)`` prototypes (zero for a class absent from the batch) and a ``(K,)`` bool
        tensor telling which classes were present.
    """
    n_classes = confidence.shape[1]
    weights = F.one_hot(classes.flatten(1), n_classes).permute(0, 2, 1).to(features.dtype)  # (B, K, N)
    weights = weights * confidence.flatten(2).to(features.dtype)
    summed = torch.einsum("bkn,bcn->kc", weights, features.flatten(2))
    mass = weights.sum(dim=(0, 2))
    return summed / mass.clamp_min(eps)[:, None], mass > eps


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * cos(z(v), p_k)`` for features ``(B, C, ...)`` and prototypes ``(K, C)`` -> ``(B, K, ...)``.

    A zero prototype (absent class) has cosine 0 with every voxel, never NaN.
    """
    z = F.normalize(features, dim=1)
    p = F.normalize(prototypes.to(features.dtype), dim=1)
    return scale * torch.einsum("bc...,kc->bk...", z, p)
