"""Mean-teacher consistency, its sigmoid ramp-up (Laine and Aila) and the teacher's input noise."""

from __future__ import annotations

import math

import torch


def sigmoid_rampup(current: float, length: float) -> float:
    """``exp(-5 (1 - min(current / length, 1))^2)``; 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(current, 0.0), length) / length
    return float(math.exp(-5.0 * phase * phase))


def consistency_weight(step: int, consistency: float, rampup_epochs: float, iters_per_epoch: int) -> float:
    """``w(t) = consistency * sigmoid_rampup(t // iters_per_epoch, rampup_epochs)``.

    With the paper's ``iters_per_epoch = 150`` and ``rampup_epochs = 40`` the weight reaches
    ``consistency`` at iteration 6000.
    """
    return consistency * sigmoid_rampup(step // iters_per_epoch, rampup_epochs)


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two softmaxes, ``(B, K, ...)`` each; teacher not differentiated."""
    return torch.mean((torch.softmax(student_logits, 1) - torch.softmax(teacher_logits.detach(), 1)) ** 2)


def teacher_input_noise(images: torch.Tensor, std: float) -> torch.Tensor:
    """``images`` plus Gaussian noise of ``std``, clamped to +-2 std: what the teacher sees.

    One ``randn_like(images)`` draw (none when ``std <= 0``: the images come back as they are,
    and the random stream is untouched). Any shape; the mean teacher's and UA-MT's passes both
    perturb their inputs here.
    """
    if std <= 0:
        return images
    return images + torch.clamp(torch.randn_like(images) * std, -2 * std, 2 * std)
