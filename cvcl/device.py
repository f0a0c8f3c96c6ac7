"""Device selection and the CUDA-only speed-ups (AMP, channels_last, cudnn.benchmark).

Everything here falls back to plain float32 on the CPU, so the same code runs on a laptop.
"""

from __future__ import annotations

import contextlib
import os

import torch

from cvcl.errors import ParamError


def select_device(name: str, param: str = "train.device") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cpu"``/``"cuda[:N]"`` are explicit.
    ``param`` is the parameter errors name (``train.device`` or ``infer.device``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParamError(param, name, "auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParamError(param, name, "auto or cpu (no CUDA device is available here)")
    if device.type not in ("cpu", "cuda"):
        raise ParamError(param, name, "auto, cpu, cuda or cuda:N")
    return device


def configure_backend(device: torch.device, deterministic: bool = False) -> None:
    """Let cuDNN pick the fastest convolution algorithms for our fixed patch size, or, with
    ``deterministic`` (``train.deterministic``), ask for reproducible kernels instead.

    On the CPU the same params and seed give the same weights either way (tested). On CUDA,
    cuDNN's autotuner and atomic additions (scatter, the backward of upsampling and of
    indexing) make runs differ in the last bits, which training amplifies; ``deterministic``
    turns the autotuner off, selects deterministic cuDNN kernels and makes PyTorch warn about
    ops that have no deterministic CUDA version (trilinear upsampling's backward, used by the
    prototype terms, is one: CVCL stays slightly non-deterministic on GPUs)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' reproducible mode
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype, or None when autocast is off: float16 on CUDA, off on the CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` on ``device``, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(device: torch.device, channels_last: bool) -> torch.memory_format:
    """``channels_last_3d`` where it pays (CUDA convolutions), else contiguous."""
    return torch.channels_last_3d if channels_last and device.type == "cuda" else torch.contiguous_format
