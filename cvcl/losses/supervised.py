"""The supervised term on labeled voxels: 0.5 * (cross-entropy + soft Dice on the foreground)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """1 - soft Dice between foreground probabilities and a binary target.

    Args:
        probs: ``(B, X, Y, Z)`` foreground probabilities in [0, 1].
        target: ``(B, X, Y, Z)`` in {0, 1}.
    Returns a scalar; Dice is computed over the whole batch, as UA-MT does.
    """
    target = target.to(probs.dtype)
    intersect = (probs * target).sum()
    denominator = (probs * probs).sum() + (target * target).sum()
    return 1.0 - (2.0 * intersect + smooth) / (denominator + smooth)


def supervised_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * (CE + soft Dice)`` for logits ``(B, K, X, Y, Z)`` and a target ``(B, X, Y, Z)`` (int64)."""
    ce = F.cross_entropy(logits, target)
    dice = soft_dice_loss(torch.softmax(logits, dim=1)[:, 1], target)
    return 0.5 * (ce + dice)
