"""Sliding-window inference with batched patches and on-device float32 accumulation.

The window grid follows the UA-MT protocol: along an axis of size ``S`` (after padding to at
least the patch ``P``) with stride ``s`` the starts are ``min(i * s, S - P)`` for
``i = 0 .. ceil((S - P) / s)``, so the last window touches the far border. MONAI's
``sliding_window_inference`` lays the same grid when its scan interval ``int(P * (1 - overlap))``
equals ``s`` (:func:`monai_overlap`), and it pads a small volume the same way (symmetrically,
with zeros).

Class probabilities (softmax of each window's logits) of overlapping windows are averaged,
uniformly (the paper's protocol) or weighted by a Gaussian importance map that trusts window
centres more (the same map as MONAI's ``mode="gaussian"``). Optional flip test-time
augmentation runs each window batch flipped as well and averages the flipped-back
probabilities into the same accumulator.

Memory: one ``(K, X, Y, Z)`` float32 accumulator and one ``(X, Y, Z)`` float32 weight sum on
the image's device, plus one batch of windows in flight; nothing grows with the number of
windows, and nothing is ever float64.

Why our own code rather than MONAI's: it serves the same purpose at the same speed (see
``benchmarks/inference.py``), but the protocol is stated in strides, the average must be of
probabilities, the flips share one accumulator, and importing MONAI costs seconds per stage.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cvcl.device import autocast
from cvcl.regions import symmetric_pads

Window = tuple[slice, ...]


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets of the windows along one axis of ``size`` voxels (``size >= patch``)."""
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / stride) + 1
    return [min(i * stride, size - patch) for i in range(count)]


def window_grid(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]) -> list[Window]:
    """Every window of the grid as spatial slices, in C order of their starts (last axis fastest)."""
    per_axis = [window_starts(s, p, st) for s, p, st in zip(shape, patch, stride, strict=True)]
    return [tuple(slice(a, a + p) for a, p in zip(start, patch, strict=True)) for start in itertools.product(*per_axis)]


def monai_overlap(patch: int, stride: int) -> float:
    """The ``overlap`` for which MONAI's scan interval ``int(patch * (1 - overlap))`` is ``stride``.

    Half a voxel of margin keeps ``int()`` from rounding ``stride - 1e-15`` down to ``stride - 1``.
    """
    if not 1 <= stride <= patch:
        raise ValueError(f"stride {stride} must be in [1, patch {patch}]")
    return 0.0 if stride == patch else (patch - stride - 0.5) / patch


def gaussian_importance(
    patch: Sequence[int], sigma_scale: float = 0.125, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(X, Y, Z)`` float32 Gaussian weights centred in the window, sigma = ``sigma_scale * P``.

    The product of one 1D Gaussian per axis, floored at 1e-3 so that border voxels keep some
    weight: the same map as MONAI's ``compute_importance_map(mode="gaussian")`` (nnU-Net's
    sigma of P/8).
    """
    w: torch.Tensor | None = None
    for axis, p in enumerate(patch):
        x = torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2.0
        g = torch.exp(x**2 / (-2 * (p * sigma_scale) ** 2))
        w = g if w is None else w.unsqueeze(-1) * g.view((1,) * axis + (p,))
    assert w is not None  # a patch has three axes
    return w.clamp_min(max(float(w.min()), 1e-3))


def _coverage(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int], device: torch.device) -> torch.Tensor:
    """``(1, X, Y, Z)`` number of windows covering each voxel (the uniform weight sum).

    The grid is a product of per-axis starts, so the count is the outer product of per-axis
    counts: exact small integers in float32, without touching the volume once per window.
    """
    counts = []
    for s, p, st in zip(shape, patch, stride, strict=True):
        c = torch.zeros(s, dtype=torch.float32, device=device)
        for a in window_starts(s, p, st):
            c[a : a + p] += 1
        counts.append(c)
    return (counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :])[None]


def _logits(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


@torch.inference_mode()
def sliding_window_probs(
    model: torch.nn.Module,
    image: torch.Tensor,
    patch: Sequence[int],
    stride: Sequence[int],
    *,
    batch_size: int = 2,
    gaussian: bool = False,
    flips: Sequence[tuple[int, ...]] = ((),),
    amp: torch.dtype | None = None,
    memory_format=torch.contiguous_format,
    progress: bool = False,
) -> torch.Tensor:
    """Class probabilities of a whole volume.

    Args:
        model: maps ``(N, C, *patch)`` to logits ``(N, K, *patch)`` (a tensor, or an object
            with ``.logits``); in eval mode.
        image: ``(C, X, Y, Z)`` float32, on the model's device.
        patch, stride: window size and step in voxels per axis (``1 <= stride <= patch``).
        batch_size: windows per forward pass.
        gaussian: weight windows by :func:`gaussian_importance` instead of uniformly.
        flips: test-time augmentation, the spatial axes (0 = X, 1 = Y, 2 = Z) to flip for each
            pass; ``((),)`` is no augmentation, ``((), (0,), (1,), (0, 1))`` the in-plane flips.
            Every window is predicted once per entry and the probabilities are averaged.
        amp: autocast dtype (float16 on CUDA; None: float32).
        memory_format: of the window batches (``torch.channels_last_3d`` on CUDA).
    Returns ``(K, X, Y, Z)`` float32 probabilities on the image's device.
    """
    if image.ndim != 4 or len(patch) != 3 or len(stride) != 3:
        raise ValueError(f"expected image (C, X, Y, Z) and 3 patch and stride sizes, got {tuple(image.shape)}")
    if any(not 1 <= s <= p for s, p in zip(stride, patch, strict=True)):
        raise ValueError(f"stride {list(stride)} must be in [1, patch {list(patch)}] (else voxels are skipped)")
    if not flips:
        raise ValueError("flips needs at least one entry; ((),) means no augmentation")
    device = image.device
    pads = symmetric_pads(image.shape[1:], patch)
    if any(a or b for a, b in pads):
        image = F.pad(image, [v for pair in reversed(pads) for v in pair])  # F.pad: last axis first
    shape = tuple(image.shape[1:])
    windows = window_grid(shape, patch, stride)
    if gaussian:
        weight = gaussian_importance(patch, device=device)
        mass = torch.zeros((1, *shape), dtype=torch.float32, device=device)
        for w in windows:
            mass[(slice(None), *w)] += weight
    else:
        weight, mass = None, _coverage(shape, patch, stride, device)
    probs: torch.Tensor | None = None
    batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    for batch in tqdm(batches, desc="windows", unit="batch", leave=False, disable=not progress):
        x = torch.stack([image[(slice(None), *w)] for w in batch]).contiguous(memory_format=memory_format)
        for axes in flips:
            dims = [a + 2 for a in axes]  # spatial axis -> batch tensor axis
            with autocast(device, amp):
                logits = _logits(model(x.flip(dims) if dims else x))
            if probs is None:
                probs = torch.zeros((logits.shape[1], *shape), dtype=torch.float32, device=device)
            # window by window: each softmax is added while it is still in cache, and no
            # batch-sized probability buffer exists besides the logits
            for i, w in enumerate(batch):
                q = torch.softmax(logits[i].float(), dim=0)
                if dims:
                    q = q.flip([d - 1 for d in dims])  # back to the volume's orientation
                target = probs[(slice(None), *w)]
                if weight is None:
                    target.add_(q)
                else:
                    target.addcmul_(q, weight)
    assert probs is not None  # window_grid yields at least one window
    probs.div_(mass)
    if len(flips) > 1:
        probs.div_(len(flips))
    crop = tuple(slice(a, s - b) for (a, b), s in zip(pads, shape, strict=False))
    return probs[(slice(None), *crop)]
