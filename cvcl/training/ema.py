"""The mean teacher: an exponential moving average of the student's weights."""

from __future__ import annotations

import torch
import torch.nn as nn


def ema_alpha(step: int, decay: float) -> float:
    """``min(1 - 1/(t+1), decay)``: a true average early on, then the fixed decay."""
    return min(1.0 - 1.0 / (step + 1), decay)


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, decay: float, step: int) -> None:
    """``teacher <- alpha * teacher + (1 - alpha) * student`` for parameters; buffers are copied.

    Copying buffers (BatchNorm running statistics) keeps a saved teacher usable in eval mode;
    during training the teacher runs in train mode and uses batch statistics, as in UA-MT.
    """
    alpha = ema_alpha(step, decay)
    t_params: list[torch.Tensor] = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t_params, alpha)
    torch._foreach_add_(t_params, s_params, alpha=1.0 - alpha)
    for t_buf, s_buf in zip(teacher.buffers(), student.buffers(), strict=True):
        t_buf.copy_(s_buf)


def make_teacher(student: nn.Module, factory) -> nn.Module:
    """A teacher with the student's architecture and weights, excluded from autograd."""
    teacher = factory()
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
