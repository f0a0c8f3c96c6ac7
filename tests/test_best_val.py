"""``train.checkpoint: best_val``: the kept weights are the best validation step's, the last
iteration's are kept beside them (across a resume too), and infer/evaluate score both, the
``*_last`` figures equal to a ``checkpoint: last`` run's at the same seed."""

import csv
import json

import pytest
import torch

from cvcl.data.dataset import PatchDataset
from cvcl.methods import LossConfig
from cvcl.models.checkpoint import holds_last, load_model
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.resume import CheckpointStore
from cvcl.training.trainer import train
from tests.helpers import run, set_params, stage_workspace, write_box_cases

MODEL = ModelConfig(base_filters=2, embed_dim=8)


class Scripted:
    """A validator answering the given Dice in turn, recording the student's and teacher's weights
    at each call (the trainer hands it the student)."""

    def __init__(self, dice: list[float], teacher_of=None) -> None:
        self.dice, self.states = list(dice), []

    def __call__(self, network: torch.nn.Module) -> float:
        self.states.append({k: v.detach().clone() for k, v in network.state_dict().items()})
        return self.dice[len(self.states) - 1]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _setup(tmp_path, iterations=6):
    write_box_cases(tmp_path, shape=(32, 32, 16), n=4)
    ds = PatchDataset(tmp_path, ["c0", "c1"], ["c2", "c3"], (32, 32, 16))
    cfg = TrainConfig(
        iterations=iterations, patch=(32, 32, 16), batch_size=4, labeled_bs=2, val_every=2, checkpoint="best_val"
    )
    objective = Objective("mean_teacher", LossConfig(rampup_length=0.0, n_anchor=8), cfg.iterations)
    return ds, cfg, objective


def test_best_val_returns_the_best_steps_weights_and_keeps_the_last(tmp_path):
    ds, cfg, objective = _setup(tmp_path)
    validate = Scripted([0.3, 0.8, 0.5])  # validations after steps 1, 3, 5: the best is step 3
    result = train(ds, MODEL, cfg, objective, torch.device("cpu"), 0, validate=validate, progress=False)
    assert (result.best_step, result.best_val) == (3, 0.8)
    assert _equal(result.student.state_dict(), validate.states[1])
    assert not _equal(result.student.state_dict(), validate.states[2])  # training moved on after it
    assert result.last is not None and result.last["step"] == 5
    assert _equal(result.last["student"], validate.states[2])
    assert result.last["teacher"] is not None and result.teacher is not None
    assert not _equal(result.last["teacher"], result.teacher.state_dict())


def test_best_val_at_the_last_step_keeps_one_model(tmp_path):
    ds, cfg, objective = _setup(tmp_path)
    validate = Scripted([0.3, 0.5, 0.8])
    result = train(ds, MODEL, cfg, objective, torch.device("cpu"), 0, validate=validate, progress=False)
    assert result.best_step == 5 and result.last is None
    assert _equal(result.student.state_dict(), validate.states[2])


def test_the_best_so_far_survives_a_resume(tmp_path):
    ds, cfg, objective = _setup(tmp_path / "data")
    store = CheckpointStore(tmp_path / "ckpt", every=4)
    first = Scripted([0.3, 0.9])  # the best (step 3) is found before the interruption at 4 iterations
    train(ds, MODEL, cfg, objective, torch.device("cpu"), 0, validate=first, checkpoints=store, stop=lambda n: n >= 4)
    state = store.load()
    assert state is not None and state["step"] == 4 and state["best"]["step"] == 3
    second = Scripted([0.5])  # after the resume only step 5 is validated, below the best
    result = train(ds, MODEL, cfg, objective, torch.device("cpu"), 0, validate=second, checkpoints=store, resume=state)
    assert result.best_step == 3 and result.best_val == 0.9
    assert _equal(result.student.state_dict(), first.states[1])
    assert result.last is not None and _equal(result.last["student"], second.states[0])


def _metrics(ws) -> dict:
    return json.loads((ws / "metrics" / "metrics.json").read_text())


def _rows(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_infer_and_evaluate_report_both_models_and_last_equals_a_last_run(tmp_path, monkeypatch, mlflow_store):
    """The stages end to end on the tiny synthetic set, the validator scripted so that best_val
    chooses an earlier step than the last; then the same seed with ``checkpoint: last``."""
    import cvcl.training.experiment as experiment
    from stages import evaluate, infer
    from stages import train as train_stage

    ws = stage_workspace(tmp_path / "ws")
    set_params(
        ws,
        {"split": {"val": 1}, "train": {"iterations": 6, "val_every": 2, "checkpoint": "best_val"}},
    )
    for stage in ("download", "preprocess", "split"):
        run(["python", "-m", f"stages.{stage}"], ws)
    monkeypatch.chdir(ws)

    def stages(scripted: Scripted) -> None:
        monkeypatch.setattr(experiment, "make_validator", lambda *a, **k: scripted)
        train_stage.main()
        infer.main()
        evaluate.main()

    stages(Scripted([0.3, 0.8, 0.5]))
    assert holds_last(ws / "models" / "model.pt")
    info = json.loads((ws / "predictions" / "checkpoint.json").read_text())
    assert info == {"checkpoint": "best_val", "chosen_step": 3, "last_step": 5}
    chosen = _metrics(ws)
    assert chosen["chosen_step"] == 3 and chosen["last_step"] == 5
    best_rows, last_rows = _rows(ws / "metrics" / "per_case.csv"), _rows(ws / "metrics" / "per_case_last.csv")
    assert [r["case_id"] for r in best_rows] == [r["case_id"] for r in last_rows]
    last_model, _ = load_model(ws / "models" / "model.pt", iteration="last")
    best_model, _ = load_model(ws / "models" / "model.pt")
    assert not _equal(last_model.state_dict(), best_model.state_dict())

    set_params(ws, {"train": {"checkpoint": "last"}})
    stages(Scripted([0.3, 0.8, 0.5]))
    assert not holds_last(ws / "models" / "model.pt")
    assert not (ws / "predictions" / "last_iteration").exists()
    plain = _metrics(ws)
    for key in ("dice", "jaccard", "hd95", "asd"):
        assert chosen[f"{key}_last"] == pytest.approx(plain[key], rel=1e-9, abs=1e-12), key
        assert plain[f"{key}_last"] == plain[key]  # a last run's last model is its model
    assert _rows(ws / "metrics" / "per_case.csv") == last_rows
    plain_model, _ = load_model(ws / "models" / "model.pt")
    assert _equal(plain_model.state_dict(), last_model.state_dict())
