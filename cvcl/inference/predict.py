"""Whole-case prediction: sliding window, optional flip TTA and largest-component cleanup."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

from cvcl.errors import ParamError
from cvcl.inference.sliding_window import sliding_window_probs
from cvcl.params import Params


@dataclass(frozen=True)
class InferConfig:
    """``infer`` in params.yaml (the patch is the training patch)."""

    patch: tuple[int, int, int] = (112, 112, 80)
    stride: tuple[int, int, int] = (18, 18, 4)
    batch_size: int = 2
    gaussian: bool = False
    tta_flip: bool = False
    largest_component: bool = False
    weights: str = "student"
    device: str = "auto"
    amp: bool = True


def infer_config(params: Params) -> InferConfig:
    patch = tuple(params.int_list("train.patch", length=3, min=16))
    stride = tuple(params.int_list("infer.stride", length=3, min=1))
    too_big = [s for s, p in zip(stride, patch) if s > p]
    if too_big:
        raise ParamError("infer.stride", list(stride), f"steps no larger than the patch {list(patch)} (else voxels are skipped)")
    return InferConfig(
        patch=patch,
        stride=stride,
        batch_size=params.int("infer.batch_size", min=1),
        gaussian=params.bool("infer.gaussian"),
        tta_flip=params.bool("infer.tta_flip"),
        largest_component=params.bool("infer.largest_component"),
        weights=params.choice("infer.weights", ("student", "teacher")),
        device=params.str("infer.device"),
        amp=params.bool("infer.amp"),
    )


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected foreground component of a binary mask."""
    labels, n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: np.ndarray, cfg: InferConfig, device: torch.device,
                   amp: torch.dtype | None = None, memory_format=torch.contiguous_format,
                   progress: bool = False) -> np.ndarray:
    """Label map ``(X, Y, Z)`` uint8 of an image ``(C, X, Y, Z)``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    kwargs = dict(batch_size=cfg.batch_size, gaussian=cfg.gaussian, amp=amp,
                  memory_format=memory_format, progress=progress)
    probs = sliding_window_probs(model, x, cfg.patch, cfg.stride, **kwargs)
    if cfg.tta_flip:
        for axes in ((1,), (2,), (1, 2)):  # flips of X, Y and both (the in-plane augmentations)
            flipped = sliding_window_probs(model, x.flip(axes), cfg.patch, cfg.stride, **kwargs)
            probs += flipped.flip(axes)
        probs /= 4
    label = probs.argmax(0).to(torch.uint8).cpu().numpy()
    if cfg.largest_component and label.any():
        label = largest_component(label > 0).astype(np.uint8)
    return label
