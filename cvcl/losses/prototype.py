"""Class prototypes (confidence-weighted masked average pooling) and prototype predictions.

For features ``z`` on the label grid, a class map ``m`` and confidences ``q``::

    p_c = sum_v q_c(v) [m(v) = c] z(v) / max(sum_v q_c(v) [m(v) = c], eps)

pooled over every image of the batch, so prototypes are defined for any batch composition.
A voxel's prototype prediction is ``softmax_c(scale * cos(z(v), p_c))``.

Speed notes (CPU): reductions over the channel axis of ``(B, C, X, Y, Z)`` tensors are
strided and slow in PyTorch (``F.normalize`` and ``argmax`` over ``dim=1`` cost 50-100x a
contiguous reduction). Features are therefore upsampled and processed in the
channels-last layout, where each voxel's channels are contiguous; the two-class argmax is a
comparison. Both are exact, and 3-6x cheaper end to end.

Precision: every function here computes in float32 with autocast switched off, whatever the
caller's autocast state. In float16 the pooled sums overflow (a prototype sums about two
million voxels at the paper's 112x112x80 patch and batch 2; float16 ends at 65504) and the
norm clamp of an all-zero feature vector (post-ReLU, common in dark background) underflows
to 0, so cos = 0/0. Either makes the loss NaN; under AMP the GradScaler then skips every
optimiser step without a word, and the network never trains (docs/method.md: "The collapse
on real LA under AMP").
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from cvcl.losses.upsampled import UpsampledFeatures
from cvcl.precision import full_precision, widen

# Features on the label grid, or coarse features held coarse (cvcl/losses/upsampled.py): every
# function here gives the same result for ``UpsampledFeatures(z, size)`` as for the upsampled ``z``.
Features = torch.Tensor | UpsampledFeatures


def _float32(fn):
    """Run ``fn`` with autocast off on its first argument's device (inputs are cast by ``fn``)."""

    @functools.wraps(fn)
    def wrapper(features: torch.Tensor, *args, **kwargs):
        with full_precision(features.device):
            return fn(features, *args, **kwargs)

    return wrapper


def voxel_rows(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, X, Y, Z)`` -> ``(B, N, C)``, free for channels-last input (a copy otherwise)."""
    b, c = features.shape[:2]
    return features.permute(0, 2, 3, 4, 1).reshape(b, -1, c)


@torch.no_grad()
@_float32
def class_prototypes(
    features: Features, classes: torch.Tensor, confidence: torch.Tensor, eps: float = 1e-5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypes of the ``K`` classes, detached from the graph.

    Args:
        features: ``(B, C, X, Y, Z)`` on the grid of ``classes`` (or held coarse).
        classes: ``(B, X, Y, Z)`` int64 class map (ground truth or pseudo-label).
        confidence: ``(B, K, X, Y, Z)`` class probabilities weighting each voxel.
    Returns:
        ``(K, C)`` prototypes (zero for a class absent from the batch) and a ``(K,)`` bool
        tensor telling which classes were present.
    """
    n_classes = confidence.shape[1]
    member = classes.reshape(classes.shape[0], 1, -1) == torch.arange(n_classes, device=classes.device).view(1, -1, 1)
    if isinstance(features, UpsampledFeatures):
        weights = confidence.reshape(*confidence.shape[:2], -1).to(features.dtype) * member
        summed = features.pool(weights.reshape(confidence.shape))  # (K, C)
    else:
        rows = widen(voxel_rows(features))  # (B, N, C)
        weights = confidence.reshape(*confidence.shape[:2], -1).to(rows.dtype) * member
        summed = torch.bmm(weights, rows).sum(0)  # (K, C)
    mass = weights.sum(dim=(0, 2))
    return summed / mass.clamp_min(eps)[:, None], mass > eps


@_float32
def prototype_scores(features: Features, prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * cos(z(v), p_k)`` as voxel rows: features ``(B, C, ...)``, prototypes ``(K, C)``
    -> ``(B, N, K)`` with ``N`` the voxels in C order of the spatial axes.

    The cosine is the dot product divided by the feature norm afterwards: normalising the
    ``(B, N, C)`` features first costs a ``C``-wide copy and its backward for nothing. A zero
    prototype (absent class) has cosine 0 with every voxel, never NaN.
    """
    p = F.normalize(widen(prototypes), dim=1)
    if isinstance(features, UpsampledFeatures):
        scores = features.dot(scale * p) / features.norm().unsqueeze(1)  # (B, K, X, Y, Z)
        return scores.flatten(2).transpose(1, 2)
    rows = widen(voxel_rows(features))  # (B, N, C)
    norms = torch.linalg.vector_norm(rows, dim=-1, keepdim=True).clamp_min(1e-12)  # (B, N, 1)
    return (rows @ (scale * p).T) / norms  # (B, N, K)


def prototype_logits(features: Features, prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """:func:`prototype_scores` shaped like the features: ``(B, K, ...)``, a channels-last view."""
    scores = prototype_scores(features, prototypes, scale)
    return scores.reshape(features.shape[0], *features.shape[2:], -1).permute(0, 4, 1, 2, 3)


class _CosineMargin(torch.autograd.Function):
    """``m = <r, delta> / ||r||`` per row of ``r`` ``(..., C)``, with a hand-written backward
    ``dm/dr = delta / ||r|| - m r / ||r||^2``: two passes over ``r`` where autograd's chain
    through the norm takes five (and most of the PCL's time on CPU)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(rows, dim=-1).clamp_min(1e-12)
        margin = (rows @ delta) / norms
        ctx.save_for_backward(rows, delta, norms, margin)
        return margin

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows, delta, norms, margin = ctx.saved_tensors
        a = (grad / norms).unsqueeze(-1)
        b = (-grad * margin / norms.square()).unsqueeze(-1)
        return torch.addcmul(a * delta, b, rows), None


@_float32
def prototype_margin(features: Features, prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * (cos(z, p_1) - cos(z, p_0))`` per voxel: features ``(B, C, ...)``, prototypes
    ``(2, C)`` (detached) -> ``(B, N)`` float32."""
    p = F.normalize(widen(prototypes.detach()), dim=1)
    if isinstance(features, UpsampledFeatures):
        margin = features.dot((scale * (p[1] - p[0]))[None])[:, 0] / features.norm()  # (B, X, Y, Z)
        return margin.flatten(1)
    rows = widen(voxel_rows(features))  # (B, N, C)
    return _CosineMargin.apply(rows, scale * (p[1] - p[0]))
