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
    x, y, z = patch
    cfg = InferConfig(patch=(x, y, z), stride=(max(1, x // 2), max(1, y // 2), max(1, z // 2)), batch_size=2, amp=False)
    cases = [ScoringCase.on_grid(read_case(case_file(c, processed_dir)), "network") for c in case_ids]

    def validate(network: torch.nn.Module) -> float:
        network.eval()  # the trainer puts it back in the mode training had it in
        predictor = Predictor(network, cfg, device, torch.contiguous_format)
        return float(np.mean([row["dice"] for row in score_rows(predictor, cases)]))

    return validate
