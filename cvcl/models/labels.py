"""From class scores to label maps: the one arg-max rule every part of the project uses."""

from __future__ import annotations

import torch


def class_argmax(scores: torch.Tensor) -> torch.Tensor:
    """Argmax over the class axis of ``(B, K, ...)`` -> ``(B, ...)`` int64 (ties: lowest class).

    Two classes compare the scores directly: the same tie rule as ``argmax``, without its
    reduction kernel.
    """
    if scores.shape[1] == 2:
        return (scores[:, 1] > scores[:, 0]).long()
    return scores.argmax(1)
