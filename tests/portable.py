"""Run a module (``python tests/portable.py stages.train``) with CPU numerics that do not depend
on which x86 CPU runs it, for the pinned record (tests/pinned.py).

PyTorch and numpy pick their kernels by the CPU's instruction set: ATen's vectorised loops (AVX2
or AVX-512), oneDNN's convolutions, MKL's GEMM and numpy's ufunc loops each round differently on
an AMD EPYC than on an Intel Xeon, and those last-bit differences grow past any useful tolerance within a
few training steps. Here ATen runs its portable loops (``ATEN_CPU_CAPABILITY=default``),
convolutions go through im2col + GEMM instead of oneDNN, MKL runs its conditional-numerical-
reproducibility path (``MKL_CBWR=COMPATIBLE``), numpy stays on its baseline loops and its
OpenBLAS on one generic kernel, and everything runs on one thread. All but the oneDNN switch are
environment variables that must be set before torch and numpy load: :data:`ENV`.
"""

from __future__ import annotations

import os
import runpy
import sys

ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    # numpy's loops dispatched above its x86-64-v2 baseline, and its OpenBLAS's per-CPU kernels
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Prescott",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


def main() -> None:
    missing = {k: v for k, v in ENV.items() if os.environ.get(k) != v}
    if missing:
        sys.exit(f"tests/portable.py: set {missing} in the environment before Python starts")
    import torch

    torch.backends.mkldnn.enabled = False
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    sys.path[0] = os.getcwd()  # the workspace (stages/, cvcl/), not tests/
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
