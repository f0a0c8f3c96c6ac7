"""A training whose batch norm would see the same labeled volumes together at every step, and
only them, says so when it starts (docs/results-la.md, "The joint tuning": such a network learns
its fixed batch)."""

import pytest

from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.settings import ExperimentConfig
from cvcl.training.config import TrainConfig, TrainingSettings
from cvcl.training.experiment import fixed_batch_statistics, training_setup
from tests.helpers import write_box_cases

PATCH = (32, 32, 16)


@pytest.mark.parametrize(
    ("norm", "labeled_bs", "semi", "split_bn", "fixed"),
    [
        ("batch", 4, False, False, True),  # supervised, all 4 labeled in every batch
        ("batch", 2, False, False, False),  # pairs drawn anew each step
        ("instance", 4, False, False, False),  # no batch statistics
        ("batch", 4, True, False, False),  # the unlabeled half changes from step to step
        ("batch", 4, True, True, True),  # ... unless the labeled half is normalised alone
    ],
)
def test_fixed_batch_statistics(norm, labeled_bs, semi, split_bn, fixed):
    model = ModelConfig(norm=norm)
    cfg = TrainConfig(patch=PATCH, batch_size=4, labeled_bs=labeled_bs, split_bn=split_bn)
    assert fixed_batch_statistics(model, cfg, n_labeled=4, semi=semi) is fixed


@pytest.mark.parametrize(("labeled_bs", "noted"), [(2, False), (2 + 2, True)])
def test_the_train_setup_notes_a_fixed_batch(tmp_path, capsys, labeled_bs, noted):
    processed = write_box_cases(tmp_path / "processed", shape=(40, 40, 24), n=5)
    split = {"labeled": ["c0", "c1", "c2", "c3"], "unlabeled": ["c4"], "val": [], "test": []}
    settings = TrainingSettings(
        experiment=ExperimentConfig(labeled=4, method="supervised"),
        train=TrainConfig(iterations=2, patch=PATCH, batch_size=4, labeled_bs=labeled_bs, device="cpu"),
        losses=LossConfig(),
        model=ModelConfig(norm="batch"),
        tracked={},
    )
    setup = training_setup(settings, split, processed)
    assert setup.model_cfg.norm == "batch"
    out = capsys.readouterr().out
    assert ("every batch normalises all 4 labeled volumes together" in out) is noted
    if noted:
        assert "train.labeled_bs = 4" in out and len(out.strip().splitlines()) == 1
