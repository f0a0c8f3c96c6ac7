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


PRECISIONS = ("float32", "bf16")


def amp_dtype(device: torch.device, enabled: bool, precision: str = "float32") -> torch.dtype | None:
    """The autocast dtype, or None when autocast is off. ``precision="bf16"`` (``train.precision``)
    asks for bfloat16 on either device; otherwise float16 on CUDA where ``enabled``
    (``train.amp``), off on the CPU."""
    if precision == "bf16":
        return torch.bfloat16
    if not enabled or device.type != "cuda":
        return None
    return torch.float16


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512_BF16 or AMX, through oneDNN); elsewhere
    bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for ``dtype`` on ``device``, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(device: torch.device, channels_last: bool, precision: str = "float32") -> torch.memory_format:
    """``channels_last_3d`` where it pays: CUDA convolutions, and oneDNN's bfloat16 convolutions
    on the CPU (measured: float32 gains nothing from it there; docs/results.md, "Training speed");
    else contiguous."""
    if not channels_last:
        return torch.contiguous_format
    if device.type == "cuda" or precision == "bf16":
        return torch.channels_last_3d
    return torch.contiguous_format
