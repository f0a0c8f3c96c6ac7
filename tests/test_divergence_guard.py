"""A non-finite loss or gradient stops training with one line naming the step and the term,
and the MLflow run ends FAILED; every step's terms and gradient norm reach the log."""

import math

import pytest
import torch
from mlflow import MlflowClient

from cvcl.data.dataset import PatchDataset
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.step import DivergenceGuard, TrainingDiverged
from cvcl.training.trainer import READBACK_EVERY, train
from tests.helpers import run, set_params, stage_workspace, write_box_cases

FINITE = {"loss": 1.0, "loss_sup": 0.5, "loss_mt": 0.1, "grad_norm": 2.0, "lr": 0.01}


def test_a_non_finite_loss_term_is_named_with_its_step():
    guard = DivergenceGuard(scaled=True)
    guard.check(3, FINITE)
    with pytest.raises(TrainingDiverged, match=r"step 4: loss term loss_mt = nan"):
        guard.check(4, {**FINITE, "loss": math.nan, "loss_mt": math.nan})


def test_a_non_finite_gradient_stops_float32_training_at_once():
    with pytest.raises(TrainingDiverged, match=r"step 0: the total gradient is non-finite"):
        DivergenceGuard(scaled=False).check(0, {**FINITE, "grad_norm": math.inf})


def test_the_loss_scaler_may_skip_some_steps_but_not_many_in_a_row():
    guard = DivergenceGuard(scaled=True, max_skipped=5)
    for step in range(4):
        guard.check(step, {**FINITE, "grad_norm": math.inf, "amp_scale": 2.0 ** (16 - step)})
    guard.check(4, FINITE)  # a good step resets the count
    for step in range(5, 9):
        guard.check(step, {**FINITE, "grad_norm": math.nan})
    with pytest.raises(TrainingDiverged, match=r"step 9: .*for 5 consecutive steps"):
        guard.check(9, {**FINITE, "grad_norm": math.nan, "amp_scale": 1.0})


class NaNAt(Objective):
    """The mean teacher whose consistency term turns NaN from ``bad_step`` on."""

    def __init__(self, bad_step: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_step = bad_step

    def __call__(self, student, teacher, images, labels, n_labeled, step):
        total, terms = super().__call__(student, teacher, images, labels, n_labeled, step)
        if step >= self.bad_step:
            terms["loss_mt"] = terms["loss_mt"] * math.nan
            total = total + terms["loss_mt"]
        return total, terms


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = write_box_cases(tmp_path_factory.mktemp("cases"))
    return PatchDataset(folder, ["c0", "c1"], ["c2", "c3"], (32, 32, 16))


def _cfg(iterations):
    return TrainConfig(iterations=iterations, patch=(32, 32, 16), batch_size=4, labeled_bs=2)


def test_training_stops_on_the_first_non_finite_step(dataset):
    records = []
    objective = NaNAt(7, "mean_teacher", LossConfig(rampup_length=0.0), 30)
    with pytest.raises(TrainingDiverged, match=r"step 7: loss term loss_mt"):
        train(
            dataset,
            ModelConfig(base_filters=2, norm="instance"),
            _cfg(30),
            objective,
            torch.device("cpu"),
            seed=0,
            on_step=lambda s, r: records.append((s, r)),
            progress=False,
        )
    assert [s for s, _ in records] == list(range(7))  # every good step was logged, none after


def test_every_step_logs_its_terms_and_gradient_norm(dataset):
    iterations = READBACK_EVERY + 3  # a partial buffer at the end is read back too
    records = []
    objective = Objective("cvcl", LossConfig(rampup_length=0.0, n_anchor=8), iterations)
    train(
        dataset,
        ModelConfig(base_filters=2, norm="instance", embed_dim=8),
        _cfg(iterations),
        objective,
        torch.device("cpu"),
        seed=0,
        on_step=lambda s, r: records.append((s, r)),
        progress=False,
    )
    assert [s for s, _ in records] == list(range(iterations))
    for _, r in records:
        assert {
            "loss",
            "loss_sup",
            "loss_mt",
            "loss_pcl_l2u",
            "loss_pcl_u2l",
            "loss_vcl_l",
            "loss_vcl_u",
            "grad_norm",
            "lr",
            "consistency_weight",
        } <= set(r)
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0
        assert "amp_scale" not in r  # no float16 scaler on the CPU


def test_a_diverging_train_stage_fails_with_one_line_and_a_failed_run(tmp_path):
    ws = stage_workspace(tmp_path / "ws")
    set_params(ws, {"method": "supervised", "train": {"lr": 1.0e12, "iterations": 40, "optimizer": "sgd"}})
    run(["python", "-m", "stages.download"], ws)
    run(["python", "-m", "stages.preprocess"], ws)
    run(["python", "-m", "stages.split"], ws)
    proc = run(["python", "-m", "stages.train"], ws, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines[-1].startswith("error: train: step ") and "non-finite" in lines[-1], lines[-1]
    assert not (ws / "models" / "model.pt").exists()
    client = MlflowClient(f"sqlite:///{ws / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert client.get_metric_history(runs[0].info.run_id, "loss")  # the curve up to the failure is kept
