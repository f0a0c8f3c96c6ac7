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
- norms ``||(U z)(v)||``: these need every channel at every voxel. They are computed one image
  at a time and the upsampled image is dropped at once; the backward recomputes it
  (``d||u||/dz = U^T (u / ||u||)``), so no ``C``-channel volume is kept between forward and
  backward.

Only ``K``-channel or one-channel maps of the label grid's size live longer than one image's
norm. The results equal those of the upsampled features to float rounding
(tests/test_upsampled.py: values and gradients against the materialised computation in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def upsample(t: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Trilinear resize of ``t`` ``(B, K, x, y, z)`` to ``size`` (``align_corners=False``),
    channels-last: reductions over the channels are then contiguous (and the kernel faster)."""
    t = t.contiguous(memory_format=torch.channels_last_3d)
    return F.interpolate(t, size=size, mode="trilinear", align_corners=False)


def resize_adjoint(t: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """``U^T t``: maps ``t`` ``(B, K, *size)`` pulled back to the coarse ``grid``, ``(B, K, *grid)``."""
    # the backward of the resize is its adjoint: PyTorch's own kernel, exact and fast
    size, coarse = list(t.shape[-3:]), [*t.shape[:2], *grid]
    backward = getattr(torch.ops.aten, "upsample_trilinear3d_backward", None)
    if backward is not None:
        return backward(t, size, coarse, False)
    with torch.enable_grad():  # the same kernel through autograd, should the op's name move
        probe = torch.zeros(coarse, dtype=t.dtype, device=t.device, requires_grad=True)
        (out,) = torch.autograd.grad(upsample(probe, tuple(size)), probe, t)
    return out


class _UpsampledNorm(torch.autograd.Function):
    """``max(||(U z)(v)||, eps)`` per voxel, one image at a time, recomputing ``U z`` in the
    backward instead of keeping it."""

    @staticmethod
    def forward(ctx, coarse: torch.Tensor, size: tuple[int, ...], eps: float) -> torch.Tensor:
        norms = torch.stack([torch.linalg.vector_norm(upsample(coarse[i:i + 1], size), dim=1)[0]
                             for i in range(coarse.shape[0])])                          # (B, *size)
        ctx.save_for_backward(coarse, norms)
        ctx.size, ctx.eps = size, eps
        return norms.clamp_min(eps)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        coarse, norms = ctx.saved_tensors
        grads = []
        for i in range(coarse.shape[0]):
            # d||u||/du = u / ||u||; 0 where the norm was clamped (as clamp_min's gradient)
            scale = torch.where(norms[i] > ctx.eps, grad[i] / norms[i].clamp_min(ctx.eps), 0.0)
            u = upsample(coarse[i:i + 1], ctx.size)
            grads.append(resize_adjoint(u * scale, tuple(coarse.shape[-3:])))
        return torch.cat(grads), None, None


class UpsampledFeatures:
    """``U z``: coarse features ``z`` ``(B, C, x, y, z)`` trilinearly resized to ``size``
    (``align_corners=False``, as ``F.interpolate``), held coarse.

    Computation is in float32 (float64 if ``z`` is), whatever the input's dtype: a float16 ``z``
    under autocast is cast at its coarse size, which costs an eighth of casting it upsampled.
    """

    def __init__(self, features: torch.Tensor, size: tuple[int, ...]) -> None:
        dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
        self.coarse = features.to(dtype)
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

    def materialise(self) -> torch.Tensor:
        """The upsampled features themselves, ``(B, C, *size)`` (what this class avoids)."""
        return upsample(self.coarse, self.size)

    def pool(self, weights: torch.Tensor) -> torch.Tensor:
        """``sum_b sum_v weights[b, k, v] (U z)[b, :, v]``: weights ``(B, K, *size)`` -> ``(K, C)``."""
        coarse_weights = resize_adjoint(weights.to(self.dtype).detach(), self.coarse.shape[-3:])  # (B, K, x, y, z)
        return torch.einsum("bkn,bcn->kc", coarse_weights.flatten(2), self.coarse.flatten(2))

    def dot(self, vectors: torch.Tensor) -> torch.Tensor:
        """``<(U z)(v), vectors[k]>``: vectors ``(K, C)`` -> ``(B, K, *size)``."""
        coarse = torch.einsum("bcn,kc->bkn", self.coarse.flatten(2), vectors.to(self.dtype))
        return upsample(coarse.reshape(*coarse.shape[:2], *self.coarse.shape[-3:]), self.size)

    def norm(self, eps: float = 1e-12) -> torch.Tensor:
        """``max(||(U z)(v)||, eps)`` per voxel, ``(B, *size)``; below ``eps`` the gradient is 0,
        as for ``vector_norm(...).clamp_min(eps)`` of the upsampled features."""
        return _UpsampledNorm.apply(self.coarse, self.size, eps)


def coarse_enough(features: torch.Tensor, size: tuple[int, ...]) -> bool:
    """Whether ``features`` ``(B, C, x, y, z)`` are better held coarse than upsampled to ``size``:
    coarser along some axis and finer along none."""
    grid = tuple(features.shape[-3:])
    return grid != tuple(size) and all(g <= s for g, s in zip(grid, size))
