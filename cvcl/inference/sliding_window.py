"""Sliding-window inference with batched patches and on-device accumulation.

The window grid follows the UA-MT protocol: along an axis of size ``S`` (after padding to at
least the patch ``P``) with stride ``s`` the starts are ``min(i * s, S - P)`` for
``i = 0 .. ceil((S - P) / s)``, so the last window touches the far border. Class probabilities
of overlapping windows are averaged (uniformly, or weighted by a Gaussian importance map that
trusts window centres more). Accumulators are float32 on the model's device and sized by the
volume, so memory does not grow with the number of windows.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cvcl.device import autocast


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis of ``size`` voxels (``size >= patch``)."""
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / stride) + 1
    return [min(i * stride, size - patch) for i in range(count)]


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 0.125,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """``(X, Y, Z)`` Gaussian weights peaking at the window centre (nnU-Net's sigma = P/8)."""
    axes = []
    for p in patch:
        x = torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2
        axes.append(torch.exp(-0.5 * (x / (p * sigma_scale)) ** 2))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    w = w / w.max()
    return w.clamp_min(1e-3)  # border voxels keep a small weight so no voxel has zero mass


def _pad_amounts(shape: Sequence[int], patch: Sequence[int]) -> list[tuple[int, int]]:
    pads = []
    for s, p in zip(shape, patch):
        extra = max(p - s, 0)
        pads.append((extra // 2, extra - extra // 2))
    return pads


def _windows(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]) -> Iterator[tuple[int, ...]]:
    return itertools.product(*[window_starts(s, p, st) for s, p, st in zip(shape, patch, stride)])


@torch.no_grad()
def sliding_window_probs(model: torch.nn.Module, image: torch.Tensor, patch: Sequence[int],
                         stride: Sequence[int], *, batch_size: int = 2, gaussian: bool = False,
                         amp: torch.dtype | None = None, memory_format=torch.contiguous_format,
                         progress: bool = False) -> torch.Tensor:
    """Class probabilities of a whole volume.

    Args:
        model: returns an object with ``.logits`` ``(N, K, *patch)`` (or a tensor).
        image: ``(C, X, Y, Z)`` float32, on the model's device.
        patch, stride: window size and step in voxels per axis.
        batch_size: windows per forward pass.
        gaussian: weight windows by :func:`gaussian_importance` instead of uniformly.
        amp: autocast dtype on CUDA (None: float32).
    Returns ``(K, X, Y, Z)`` float32 probabilities on the image's device.
    """
    device = image.device
    pads = _pad_amounts(image.shape[1:], patch)
    if any(a or b for a, b in pads):
        flat = [v for pair in reversed(pads) for v in pair]  # F.pad wants the last axis first
        image = F.pad(image, flat)
    shape = image.shape[1:]
    weight = gaussian_importance(patch, device=device) if gaussian else None
    probs = None
    mass = torch.zeros((1, *shape), dtype=torch.float32, device=device)
    starts = list(_windows(shape, patch, stride))
    batches = [starts[i:i + batch_size] for i in range(0, len(starts), batch_size)]
    for batch in tqdm(batches, desc="windows", unit="batch", leave=False, disable=not progress):
        slices = [tuple(slice(a, a + p) for a, p in zip(start, patch)) for start in batch]
        x = torch.stack([image[(slice(None),) + s] for s in slices]).contiguous(memory_format=memory_format)
        with autocast(device, amp):
            out = model(x)
        logits = out.logits if hasattr(out, "logits") else out
        p = torch.softmax(logits.float(), dim=1)
        if probs is None:
            probs = torch.zeros((p.shape[1], *shape), dtype=torch.float32, device=device)
        for i, s in enumerate(slices):
            if weight is None:
                probs[(slice(None),) + s] += p[i]
                mass[(slice(None),) + s] += 1.0
            else:
                probs[(slice(None),) + s] += p[i] * weight
                mass[(slice(None),) + s] += weight
    probs /= mass
    crop = tuple(slice(a, s - b) for (a, b), s in zip(pads, shape))
    return probs[(slice(None),) + crop]
