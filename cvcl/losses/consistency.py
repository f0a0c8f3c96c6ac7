"""Mean-teacher consistency, its sigmoid ramp-up (Laine and Aila) and the input noise of the
teacher (and, optionally, the student) on the unlabeled volumes."""

from __future__ import annotations

import math

import torch


def sigmoid_rampup(current: float, length: float) -> float:
    """``exp(-5 (1 - min(current / length, 1))^2)``; 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(current, 0.0), length) / length
    return float(math.exp(-5.0 * phase * phase))


def consistency_weight(
    step: int, consistency: float, rampup_epochs: float, ramp_iterations: float, start: int = 0
) -> float:
    """``w(t) = consistency * sigmoid_rampup(e, R)``, ``e = floor((t - S) * R / L)``; 0 before ``S``.

    The ramp climbs in ``R = rampup_epochs`` steps over the ``L = ramp_iterations`` iterations
    from ``S = start`` and stays at ``consistency`` after. The reference counts ``e = t // 150``
    with ``R = 40`` and ``S = 0``: that is ``L = 6000``, its whole run; here ``L`` follows the run
    (``loss.rampup_length * train.iterations``), so a shorter or longer run keeps the shape.
    ``S > 0`` (``loss.rampup_start``) keeps the unlabeled terms off until the labeled loss has
    settled: exactly 0, where the ramp's first step would already be ``exp(-5)``.
    ``L <= 0`` or ``R <= 0``: no ramp (still 0 before ``S``).
    """
    if step < start:
        return 0.0
    if ramp_iterations <= 0 or rampup_epochs <= 0:
        return consistency
    # one rounding (t * R is exact for the integer R of every preset): the staircase lands on the
    # reference's iterations exactly
    epoch = math.floor((step - start) * rampup_epochs / ramp_iterations)
    return consistency * sigmoid_rampup(epoch, rampup_epochs)


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two softmaxes, ``(B, K, ...)`` each; teacher not differentiated."""
    return torch.mean((torch.softmax(student_logits, 1) - torch.softmax(teacher_logits.detach(), 1)) ** 2)


def teacher_input_noise(images: torch.Tensor, std: float) -> torch.Tensor:
    """``images`` plus Gaussian noise of ``std``, clamped to +-2 std: what the teacher sees.

    One ``randn_like(images)`` draw (none when ``std <= 0``: the images come back as they are,
    and the random stream is untouched). Any shape; the mean teacher's and UA-MT's passes both
    perturb their inputs here, and so does the student's unlabeled half with
    ``loss.student_noise``.
    """
    if std <= 0:
        return images
    return images + torch.clamp(torch.randn_like(images) * std, -2 * std, 2 * std)
