"""Learning-rate schedule."""

from __future__ import annotations


def poly_lr(base_lr: float, step: int, total: int, power: float = 0.9) -> float:
    """``base_lr * (1 - step/total)^power`` (step counted from 0)."""
    return base_lr * (1.0 - min(step, total) / total) ** power
