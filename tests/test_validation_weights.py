"""``train.val_weights``: the validation step scores the student or the EMA teacher."""

import pytest
import torch

from cvcl.data.dataset import PatchDataset
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.trainer import train
from tests.helpers import write_box_cases


@pytest.mark.parametrize(
    "method,weights,expected",
    [
        ("mean_teacher", "teacher", "teacher"),
        ("mean_teacher", "student", "student"),
        ("supervised", "teacher", "student"),  # no teacher: the student is what there is
    ],
)
def test_validation_scores_the_chosen_network(tmp_path, method, weights, expected):
    write_box_cases(tmp_path, shape=(32, 32, 16), n=4)
    ds = PatchDataset(tmp_path, ["c0", "c1"], ["c2", "c3"], (32, 32, 16))
    cfg = TrainConfig(iterations=4, patch=(32, 32, 16), batch_size=4, labeled_bs=2, val_every=2, val_weights=weights)
    scored, modes = [], []

    def validate(network: torch.nn.Module) -> float:
        scored.append(network)
        modes.append(network.training)
        network.eval()  # as the real validator does: the trainer must restore the mode after
        return 0.5

    objective = Objective(method, LossConfig(rampup_length=0.0, n_anchor=8), cfg.iterations)
    result = train(
        ds,
        ModelConfig(base_filters=2, embed_dim=8),
        cfg,
        objective,
        torch.device("cpu"),
        0,
        validate=validate,
        progress=False,
    )
    network = result.teacher if expected == "teacher" else result.student
    assert len(scored) == 2 and all(n is network for n in scored)
    assert network.training == modes[0]  # put back in the mode training had it in
