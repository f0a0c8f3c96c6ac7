"""Validation Dice during training (on the validation split, never the test set)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from cvcl.evaluation.scoring import ScoringCase, score_rows
from cvcl.inference.config import InferConfig
from cvcl.inference.predictor import Predictor
from cvcl.io.volume import read_case
from cvcl.workspace import case_file


def make_validator(
    processed_dir: str | Path, case_ids: Sequence[str], patch: Sequence[int], device: torch.device
) -> Callable[[torch.nn.Module], float]:
    """A function ``network -> mean Dice`` (a fraction) over the validation cases, with
    ``patch`` the training patch (voxels X, Y, Z).

    Windows are the training patch with half-patch strides: cheaper than the test protocol,
    and validation only has to rank checkpoints. The cases are scored on the network grid
    (voxel distances), in float32 and the default memory format whatever the training's AMP
    and channels_last: validation has always run so, and its figures stay comparable.
    """
    cfg = validation_window(patch)
    cases = validation_cases(processed_dir, case_ids)

    def validate(network: torch.nn.Module) -> float:
        network.eval()  # the trainer puts it back in the mode training had it in
        return mean_dice(network, cases, cfg, device)

    return validate


def validation_window(patch: Sequence[int]) -> InferConfig:
    """The validation's sliding window: the training patch with half-patch strides, 2 windows a pass."""
    x, y, z = patch
    return InferConfig(
        patch=(x, y, z), stride=(max(1, x // 2), max(1, y // 2), max(1, z // 2)), batch_size=2, amp=False
    )


def validation_cases(processed_dir: str | Path, case_ids: Sequence[str]) -> list[ScoringCase]:
    """The cases read once, scored on the network grid."""
    return [ScoringCase.on_grid(read_case(case_file(c, processed_dir)), "network") for c in case_ids]


def mean_dice(network: torch.nn.Module, cases: list[ScoringCase], cfg: InferConfig, device: torch.device) -> float:
    """Mean Dice (a fraction) of ``network`` over ``cases``, in whatever mode the caller set."""
    predictor = Predictor(network, cfg, device, torch.contiguous_format)
    return float(np.mean([row["dice"] for row in score_rows(predictor, cases)]))
