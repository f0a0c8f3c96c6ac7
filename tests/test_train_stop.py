"""The trainer's stop condition (``train(..., stop=...)``), as ``benchmarks/gpu_check.py``'s
``--minutes`` deadline uses it: asked after every iteration, it ends training there with every
step so far delivered, and the result says how far training got."""

import torch

from cvcl.data.dataset import PatchDataset
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.trainer import train
from tests.helpers import write_box_cases


def _train(tmp_path, stop):
    write_box_cases(tmp_path, shape=(32, 32, 16), n=4)
    ds = PatchDataset(tmp_path, ["c0", "c1"], ["c2", "c3"], (32, 32, 16))
    cfg = TrainConfig(iterations=5, patch=(32, 32, 16), batch_size=4, labeled_bs=2)
    steps: list[int] = []
    objective = Objective("mean_teacher", LossConfig(rampup_length=0.0), cfg.iterations)
    result = train(
        ds,
        ModelConfig(base_filters=2, embed_dim=8),
        cfg,
        objective,
        torch.device("cpu"),
        0,
        on_step=lambda step, values: steps.append(step),
        progress=False,
        stop=stop,
    )
    return result, steps


def test_a_stop_ends_training_where_it_says_with_every_step_delivered(tmp_path):
    asked: list[int] = []

    def stop(done: int) -> bool:
        asked.append(done)
        return done >= 2

    result, steps = _train(tmp_path, stop)
    assert asked == [1, 2] and steps == [0, 1] and result.reached == 2
    assert result.teacher is not None and result.resumed_from == 0


def test_a_stop_that_never_fires_is_asked_every_iteration_the_last_too(tmp_path):
    asked: list[int] = []

    def never(done: int) -> bool:
        asked.append(done)
        return False

    result, steps = _train(tmp_path, never)
    assert asked == [1, 2, 3, 4, 5] and steps == [0, 1, 2, 3, 4] and result.reached == 5
