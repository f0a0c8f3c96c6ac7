"""Where autocast is turned off: the prototype terms stay float32 whatever autocast does (float16
overflows there: cvcl/losses/prototype.py, docs/method.md "The collapse on real LA under AMP"),
the V-Net's convolutions on maps smaller than their kernel stay float32 under CPU bf16
(cvcl/models/vnet.py), and float64 is kept for the exactness tests."""

from __future__ import annotations

import contextlib

import torch


def full_precision(device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context in which autocast is off on ``device``'s type: ops run in their inputs' dtype."""
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    return torch.autocast(device_type=kind, enabled=False)


def widen(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or float64 when it is float64 (the exactness tests compute in float64)."""
    return t if t.dtype == torch.float64 else t.float()
