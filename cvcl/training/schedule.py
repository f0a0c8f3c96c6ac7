"""Learning-rate schedules: poly decay (the CVCL and SSL4MIS scripts) and step decay (UA-MT's)."""

from __future__ import annotations

LR_SCHEDULES = ("poly", "step")


def poly_lr(base_lr: float, step: int, total: int, power: float = 0.9) -> float:
    """``base_lr * (1 - step/total)^power`` (step counted from 0)."""
    return base_lr * (1.0 - min(step, total) / total) ** power


def step_lr(base_lr: float, step: int, every: int, gamma: float = 0.1) -> float:
    """``base_lr * gamma^(step // every)`` (step counted from 0): UA-MT's LA schedule is
    ``every=2500, gamma=0.1`` over 6000 iterations, so 0.01, then 0.001 from 2500, 1e-4 from 5000."""
    return base_lr * gamma ** (step // every)


def learning_rate(
    schedule: str, base_lr: float, step: int, total: int, power: float, every: int, gamma: float
) -> float:
    """The learning rate of ``step`` under ``schedule`` (:data:`LR_SCHEDULES`)."""
    if schedule == "step":
        return step_lr(base_lr, step, every, gamma)
    return poly_lr(base_lr, step, total, power)
