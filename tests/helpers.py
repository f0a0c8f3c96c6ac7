"""Running the pipeline's own commands in throw-away workspaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
PIPELINE_OUTPUTS = ("metrics/", "dvc_plots/")

TINY = {
    "labeled": 2,
    "download": {
        "synthetic": {"n_train": 5, "n_test": 2, "shape": [40, 36, 24], "spacing": [1.25, 1.25, 1.25], "seed": 7}
    },
    "model": {"base_filters": 4},
    "train": {"iterations": 4, "patch": [32, 32, 16], "batch_size": 4, "labeled_bs": 2},
    # vcl_weight 1 (the demo default, in the reference units), named vcl1 in run names
    "loss": {"n_anchor": 16, "uamt_passes": 2, "vcl_weight": 1.0},
    "infer": {"stride": [16, 16, 16]},
}


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["DVC_NO_ANALYTICS"] = "1"
    e["PYTHONUNBUFFERED"] = "1"
    e.setdefault("GIT_AUTHOR_NAME", "cvcl tests")
    e.setdefault("GIT_AUTHOR_EMAIL", "tests@example.invalid")
    e.setdefault("GIT_COMMITTER_NAME", "cvcl tests")
    e.setdefault("GIT_COMMITTER_EMAIL", "tests@example.invalid")
    return e


def deep_update(tree: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            deep_update(tree[key], value)
        else:
            tree[key] = value
    return tree


def set_params(workspace: Path, changes: dict) -> None:
    path = workspace / "params.yaml"
    params = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(deep_update(params, changes), sort_keys=False))


def run(
    cmd: list[str], cwd: Path, check: bool = True, timeout: int = 600, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` with :func:`env` plus ``extra_env`` (which may set ``MLFLOW_*``)."""
    proc = subprocess.run(
        cmd, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def stage_workspace(tmp: Path) -> Path:
    """A folder where ``python -m stages.<name>`` runs against the repository's code."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("cvcl", "stages"):
        (tmp / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "params.yaml", tmp / "params.yaml")
    set_params(tmp, TINY)
    return tmp


def copy_repository(dest: Path) -> Path:
    """The project's files (tracked and not ignored) in a fresh git repository at ``dest``."""

    def ls(*flags: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", *flags, "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
        return [p for p in out.stdout.split("\0") if p]

    # tracked files, plus new files not yet committed, but never the pipeline's own outputs
    listed = ls() + [p for p in ls("-o", "--exclude-standard") if not p.startswith(PIPELINE_OUTPUTS)]
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "copy"], dest)
    return dest


def write_box_cases(folder: Path, shape=(32, 32, 16), n: int = 4, seed: int = 0) -> Path:
    """``n`` processed cases ``c0``.. of a noisy box (foreground in the middle half of each axis)."""
    import numpy as np

    from cvcl.io.volume import Case, Geometry, write_case

    rng = np.random.default_rng(seed)
    box = tuple(slice(s // 4, s // 4 + s // 2) for s in shape)
    for i in range(n):
        label = np.zeros(shape, np.uint8)
        label[box] = 1
        image = (label + 0.3 * rng.standard_normal(shape)).astype(np.float32)[None]
        write_case(folder / f"c{i}.h5", Case(f"c{i}", image, label, Geometry.from_spacing((1, 1, 1))))
    return folder


def bn_vnet_trained_a_little(cfg, patch=(32, 32, 16)):
    """A batch-norm V-Net (``cfg``: a ``ModelConfig`` with ``norm="batch"``), without its projection
    head, whose running statistics moved away from their initial values: three train-mode passes
    over N(1, 2) batches of two ``patch``-sized volumes, seed 0."""
    import torch

    from cvcl.models.config import build_model

    torch.manual_seed(0)
    net = build_model(cfg, with_projection=False).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, 1, *patch) * 2 + 1)
    return net
