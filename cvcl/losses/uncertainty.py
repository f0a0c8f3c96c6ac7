"""UA-MT: consistency restricted to voxels where the teacher is certain (Yu et al., 2019)."""

from __future__ import annotations

import math

import torch
from torch import nn

from cvcl.losses.consistency import sigmoid_rampup, teacher_input_noise


@torch.no_grad()
def teacher_uncertainty(
    teacher: nn.Module, images: torch.Tensor, passes: int = 8, noise: float = 0.1, chunk: int = 4
) -> torch.Tensor:
    """Predictive entropy of the teacher over ``passes`` noisy forward passes.

    Args:
        images: ``(B, C, X, Y, Z)`` unlabeled inputs.
        passes: ``T``, the number of stochastic passes (input noise and dropout).
        noise: std of the Gaussian input noise (clamped to +-2 std; see ``teacher_input_noise``).
        chunk: passes evaluated per forward call (memory versus speed).
    Returns ``(B, 1, X, Y, Z)`` entropy in nats, in ``[0, ln K]``.
    """
    mean_prob = None
    done = 0
    while done < passes:
        n = min(chunk, passes - done)
        batch = teacher_input_noise(images.repeat(n, 1, 1, 1, 1), noise)
        probs = torch.softmax(teacher(batch).logits.float(), dim=1)
        probs = probs.reshape(n, images.shape[0], *probs.shape[1:]).sum(0)
        mean_prob = probs if mean_prob is None else mean_prob + probs
        done += n
    assert mean_prob is not None, "passes must be at least 1"
    mean_prob = mean_prob / passes
    return -(mean_prob * torch.log(mean_prob + 1e-6)).sum(1, keepdim=True)


def uncertainty_threshold(step: int, total: int, n_classes: int = 2) -> float:
    """Threshold ramped from 0.75 to 1.0 of ``ln K`` over training (sigmoid ramp-up)."""
    return (0.75 + 0.25 * sigmoid_rampup(step, total)) * math.log(n_classes)


def masked_consistency(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, uncertainty: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Softmax MSE on voxels with ``uncertainty < threshold``, normalised by their count."""
    mse = (torch.softmax(student_logits.float(), 1) - torch.softmax(teacher_logits.detach().float(), 1)) ** 2
    mask = (uncertainty < threshold).to(mse.dtype)
    return (mask * mse).sum() / (2 * mask.sum() + 1e-16)
