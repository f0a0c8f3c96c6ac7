"""Validation Dice during training (on the validation split, never the test set)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from cvcl.evaluation.metrics import case_metrics
from cvcl.inference.predictor import InferConfig, predict_volume
from cvcl.io.volume import read_case
from cvcl.params import Params
from cvcl.workspace import case_file


def make_validator(processed_dir: str | Path, case_ids: Sequence[str], params: Params,
                   device: torch.device) -> Callable[[torch.nn.Module], float]:
    """A function ``student -> mean Dice`` over the validation cases.

    Windows are the training patch with half-patch strides: cheaper than the test protocol,
    and validation only has to rank checkpoints.
    """
    patch = tuple(params.get("train.patch"))
    cfg = InferConfig(patch=patch, stride=tuple(max(1, p // 2) for p in patch), batch_size=2)
    cases = [read_case(case_file(c, processed_dir)) for c in case_ids]

    def validate(student: torch.nn.Module) -> float:
        student.eval()
        scores = [case_metrics(predict_volume(student, c.image, cfg, device) > 0, c.label > 0)["dice"]
                  for c in cases]
        return float(np.mean(scores))

    return validate
