import math
from itertools import pairwise

import pytest
import torch
import yaml

from cvcl.losses.consistency import consistency_weight, sigmoid_rampup
from cvcl.methods import LossConfig
from cvcl.models.vnet import VNet
from cvcl.training.ema import ema_alpha, make_teacher, update_ema
from cvcl.training.objective import Objective
from cvcl.training.schedule import poly_lr
from tests.conftest import ROOT


def test_consistency_ramp_matches_the_formula_at_chosen_iterations():
    # the reference: w(t) = 0.1 * exp(-5 (1 - min(e/40, 1))^2), e = t // 150, over its 6000 iterations
    assert consistency_weight(0, 0.1, 40, 6000) == pytest.approx(0.1 * math.exp(-5))
    assert consistency_weight(149, 0.1, 40, 6000) == pytest.approx(0.1 * math.exp(-5))
    assert consistency_weight(150, 0.1, 40, 6000) == pytest.approx(0.1 * math.exp(-5 * (1 - 1 / 40) ** 2))
    assert consistency_weight(3000, 0.1, 40, 6000) == pytest.approx(0.1 * math.exp(-5 * 0.25))
    assert consistency_weight(6000, 0.1, 40, 6000) == pytest.approx(0.1)
    assert consistency_weight(9000, 0.1, 40, 6000) == pytest.approx(0.1)
    assert sigmoid_rampup(5, 0) == 1.0
    assert consistency_weight(0, 0.3, 40, 0) == 0.3  # no ramp


def reference_ramp(step: int) -> float:
    """The reference's schedule, as its training script computes it (epoch = iteration // 150)."""
    return 0.1 * sigmoid_rampup(step // 150, 40)


def test_the_paper_preset_gives_the_reference_schedule_exactly():
    preset = yaml.safe_load((ROOT / "presets" / "paper-la.yaml").read_text())
    iterations = preset["train.iterations"]
    cfg = LossConfig(
        consistency=preset["loss.consistency"],
        rampup_epochs=preset["loss.rampup_epochs"],
        rampup_length=preset.get("loss.rampup_length", 1.0),
    )
    objective = Objective("cvcl", cfg, iterations)
    assert iterations == 6000
    for step in range(iterations + 10):
        assert consistency_weight(
            step, cfg.consistency, cfg.rampup_epochs, objective.ramp_iterations
        ) == reference_ramp(step), step


@pytest.mark.parametrize("iterations", [600, 1000, 1500, 4000])
def test_the_ramp_follows_the_run(iterations):
    # the same share of the run at any length: the maximum reached at rampup_length of it, not before
    cfg = LossConfig(consistency=1.0, rampup_epochs=40, rampup_length=0.5)
    ramp = Objective("mean_teacher", cfg, iterations).ramp_iterations
    weights = [consistency_weight(t, 1.0, 40, ramp) for t in range(iterations)]
    assert weights[0] == pytest.approx(math.exp(-5))
    assert weights[iterations // 2] == 1.0 and max(weights[: iterations // 2 - iterations // 80]) < 1.0
    assert weights[iterations // 4] == pytest.approx(math.exp(-5 * 0.25), rel=0.1)
    assert all(a <= b for a, b in pairwise(weights))


def test_poly_lr():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 100, 100) == 0.0


def test_ema_alpha_is_a_true_average_then_the_decay():
    assert ema_alpha(0, 0.99) == 0.0
    assert ema_alpha(1, 0.99) == 0.5
    assert ema_alpha(9, 0.99) == pytest.approx(0.9)
    assert ema_alpha(5000, 0.99) == 0.99


def test_ema_update_is_the_weighted_average_and_copies_buffers():
    student = VNet(base_filters=2, embed_dim=4)
    teacher = make_teacher(student, lambda: VNet(base_filters=2, embed_dim=4))
    assert all(not p.requires_grad for p in teacher.parameters())
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student.enc[0][1].running_mean.fill_(3.0)
    update_ema(teacher, student, decay=0.99, step=1)  # alpha = 0.5
    for t, s, b in zip(teacher.parameters(), student.parameters(), before, strict=True):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * s)
    assert torch.all(teacher.enc[0][1].running_mean == 3.0)


def test_a_delayed_ramp_is_zero_then_the_same_ramp_shifted():
    # loss.rampup_start: exactly 0 before S (the undelayed ramp's first step is exp(-5) > 0), then
    # the ramp of L iterations starting at S, reaching the maximum at S + L
    cfg = LossConfig(consistency=1.0, rampup_epochs=40, rampup_length=0.5, rampup_start=0.25)
    objective = Objective("mean_teacher", cfg, 1200)
    assert (objective.ramp_start, objective.ramp_iterations, objective.ramp_end) == (300, 600.0, 900.0)
    weights = [consistency_weight(t, 1.0, 40, objective.ramp_iterations, objective.ramp_start) for t in range(1200)]
    assert weights[:300] == [0.0] * 300
    assert weights[300:900] == [consistency_weight(t, 1.0, 40, 600) for t in range(600)]
    assert weights[299] == 0.0 < weights[300] == pytest.approx(math.exp(-5))
    assert max(weights[:899]) < 1.0 == weights[900] == weights[-1]
    # the default start is today's ramp, value for value
    plain = Objective("mean_teacher", LossConfig(consistency=1.0, rampup_length=0.5), 1200)
    assert plain.ramp_start == 0 and plain.ramp_end == 600.0


def test_the_late_ema_decay_starts_where_the_ramp_ends_and_is_off_by_default():
    from cvcl.models.config import ModelConfig
    from cvcl.training.config import TrainConfig
    from cvcl.training.step import TrainStep

    losses = LossConfig(rampup_length=0.4, rampup_start=0.1)  # the ramp holds its maximum from 500
    model = ModelConfig(base_filters=2, embed_dim=4)
    late = TrainStep(
        Objective("mean_teacher", losses, 1000),
        model,
        TrainConfig(iterations=1000, ema_decay_late=0.999),
        torch.device("cpu"),
    )
    assert [late.ema_decay(t) for t in (0, 499, 500, 999)] == [0.99, 0.99, 0.999, 0.999]
    plain = TrainStep(Objective("mean_teacher", losses, 1000), model, TrainConfig(iterations=1000), torch.device("cpu"))
    assert {plain.ema_decay(t) for t in range(1000)} == {0.99}
