"""The same params and seed twice give identical results on the CPU; train.deterministic asks
CUDA for reproducible kernels."""

import json

import torch

from cvcl.device import configure_backend
from tests.helpers import run, stage_workspace


def test_the_same_params_and_seed_give_identical_metrics(tmp_path):
    ws = stage_workspace(tmp_path / "ws")
    for stage in ("download", "preprocess", "split"):
        run(["python", "-m", f"stages.{stage}"], ws)
    results = []
    for _ in range(2):
        for stage in ("train", "infer", "evaluate"):
            run(["python", "-m", f"stages.{stage}"], ws)
        results.append(json.loads((ws / "metrics" / "metrics.json").read_text()))
    assert results[0] == results[1]


def test_deterministic_mode_sets_the_backend_flags():
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        configure_backend(torch.device("cpu"), deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1], before[2]
