"""Features seen through a trilinear upsampling, without keeping them upsampled.

The prototypes pool the V-Net's ``center`` features (``2f`` channels at half the label grid's
resolution per axis: 32 channels on 56x56x40 at the paper's size) over the label grid. Upsampled
to the grid and in float32 they are 8 times their own size (128 MiB per image at the paper's
size), and the loss block used to build, keep for the backward and differentiate several such
volumes. What the prototype terms need from the upsampled features ``U z`` is linear in them,
or a norm:

- pooling: ``sum_v w(v) (U z)(v) = sum_j (U^T w)(j) z(j)``: the weights go through the
  adjoint (transpose) of the upsampling, PyTorch's own backward kernel of the resize; the
  features stay coarse. The teacher's features are never upsampled.
- dot products with a few vectors (the prototypes): ``<(U z)(v), p> = (U <z, p>)(v)``: one
  coarse map per vector, upsampled after.
- norms ``||(U z)(v)||``: these need every channel at every voxel, so the student's features
  are upsampled once, for the norm alone, in channels-last order (the reduction is contiguous).
  Computing them one image at a time and recomputing the upsampling in the backward instead of
  keeping it cut the step's peak memory (CVCL / mean teacher 1.072 instead of 1.146 at the
  paper's size on the CPU) but cost time there (docs/results.md, "Training speed"); the upsampled
  student features are kept.

Everything else on the label grid has ``K`` channels (classes) or one. The results equal those
of the upsampled features to float rounding (tests/test_upsampled.py: values and gradients
against the materialised computation in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvcl.precision import widen


def upsample_to(features: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Trilinearly resize ``(B, C, x, y, z)`` features to ``size`` (``align_corners=False``); the
    result is channels-last, so reductions over the channels are contiguous."""
    features = features.contiguous(memory_format=torch.channels_last_3d)
    if tuple(features.shape[-3:]) == tuple(size):
        return features
    return F.interpolate(features, size=size, mode="trilinear", align_corners=False)


def resize_adjoint(t: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """``U^T t``: maps ``t`` ``(B, K, *size)`` pulled back to the coarse ``grid``, ``(B, K, *grid)``."""
    # the backward of the resize is its adjoint: PyTorch's own kernel, exact and fast
    return torch.ops.aten.upsample_trilinear3d_backward(t, list(t.shape[-3:]), [*t.shape[:2], *grid], False)


class UpsampledFeatures:
    """``U z``: coarse features ``z`` ``(B, C, x, y, z)`` trilinearly resized to ``size``
    (``align_corners=False``, as ``F.interpolate``), held coarse.

    Computation is in float32 (float64 if ``z`` is), whatever the input's dtype: a float16 ``z``
    under autocast is cast at its coarse size, which costs an eighth of casting it upsampled.
    """

    def __init__(self, features: torch.Tensor, size: tuple[int, ...]) -> None:
        self.coarse = widen(features)
        self.size = tuple(int(s) for s in size)

    @property
    def shape(self) -> torch.Size:
        """The shape of the upsampled features, ``(B, C, *size)``."""
        return torch.Size((*self.coarse.shape[:2], *self.size))

    @property
    def device(self) -> torch.device:
        return self.coarse.device

    @property
    def dtype(self) -> torch.dtype:
        return self.coarse.dtype

    def pool(self, weights: torch.Tensor) -> torch.Tensor:
        """``sum_b sum_v weights[b, k, v] (U z)[b, :, v]``: weights ``(B, K, *size)`` -> ``(K, C)``."""
        coarse_weights = resize_adjoint(weights.to(self.dtype).detach(), self.coarse.shape[-3:])  # (B, K, x, y, z)
        return torch.einsum("bkn,bcn->kc", coarse_weights.flatten(2), self.coarse.flatten(2))

    def dot(self, vectors: torch.Tensor) -> torch.Tensor:
        """``<(U z)(v), vectors[k]>``: vectors ``(K, C)`` -> ``(B, K, *size)``."""
        coarse = torch.einsum("bcn,kc->bkn", self.coarse.flatten(2), vectors.to(self.dtype))
        return upsample_to(coarse.reshape(*coarse.shape[:2], *self.coarse.shape[-3:]), self.size)

    def norm(self, eps: float = 1e-12) -> torch.Tensor:
        """``max(||(U z)(v)||, eps)`` per voxel, ``(B, *size)``; below ``eps`` the gradient is 0,
        as for ``vector_norm(...).clamp_min(eps)`` of the upsampled features."""
        # the one C-channel volume the block builds (kept by autograd for the norm's backward):
        # channels-last, so the norm reduces over a contiguous axis
        return torch.linalg.vector_norm(upsample_to(self.coarse, self.size), dim=1).clamp_min(eps)


def coarse_enough(features: torch.Tensor, size: tuple[int, ...]) -> bool:
    """Whether ``features`` ``(B, C, x, y, z)`` are better held coarse than upsampled to ``size``:
    coarser along some axis and finer along none."""
    grid = tuple(features.shape[-3:])
    return grid != tuple(size) and all(g <= s for g, s in zip(grid, size, strict=True))
