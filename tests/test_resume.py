"""Resume after a kill: the training state saved every N iterations brings a SIGKILLed run to
the same final weights as an uninterrupted one (CPU, fixed seed); other inputs start afresh."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow import MlflowClient

from cvcl.data.dataset import PatchDataset
from cvcl.data.sampler import TwoStreamBatchSampler
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.resume import CheckpointStore
from cvcl.training.trainer import train
from tests.conftest import ROOT
from tests.helpers import run, set_params, stage_workspace, write_box_cases

ITERATIONS, EVERY = 30, 10

TRAIN = f"""
import os, signal, sys, torch
from cvcl.data.dataset import PatchDataset
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.resume import CheckpointStore
from cvcl.training.trainer import train
folder, store_dir, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
ds = PatchDataset(folder, ["c0", "c1"], ["c2", "c3"], (32, 32, 16))
cfg = TrainConfig(iterations={ITERATIONS}, patch=(32, 32, 16), batch_size=4, labeled_bs=2)
objective = Objective("cvcl", LossConfig(rampup_epochs=10, rampup_length=10 / {ITERATIONS}, n_anchor=8), {ITERATIONS})
def on_step(step, record):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
train(ds, ModelConfig(base_filters=2, norm="instance", embed_dim=8), cfg, objective, torch.device("cpu"), 0,
      on_step=on_step, progress=False, checkpoints=CheckpointStore(store_dir, {EVERY}))
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return write_box_cases(tmp_path_factory.mktemp("cases"), shape=(40, 36, 20))


def _train(folder, **kwargs):
    torch.set_num_threads(1)
    ds = PatchDataset(folder, ["c0", "c1"], ["c2", "c3"], (32, 32, 16))
    cfg = TrainConfig(iterations=ITERATIONS, patch=(32, 32, 16), batch_size=4, labeled_bs=2)
    objective = Objective("cvcl", LossConfig(rampup_epochs=10, rampup_length=10 / ITERATIONS, n_anchor=8), ITERATIONS)
    return train(
        ds,
        ModelConfig(base_filters=2, norm="instance", embed_dim=8),
        cfg,
        objective,
        torch.device("cpu"),
        0,
        progress=False,
        **kwargs,
    )


def test_the_sampler_skips_batches_without_changing_the_rest():
    full = list(TwoStreamBatchSampler([0, 1, 2], [3, 4, 5, 6], 4, 2, 12, seed=3))
    assert list(TwoStreamBatchSampler([0, 1, 2], [3, 4, 5, 6], 4, 2, 12, seed=3, start=7)) == full[7:]


@pytest.mark.parametrize("kill_at", [13, 27])
def test_a_sigkilled_training_resumes_to_the_same_weights(cases, tmp_path, kill_at):
    store_dir = tmp_path / "ckpt"
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN, str(cases), str(store_dir), str(kill_at)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    store = CheckpointStore(store_dir, EVERY)
    state = store.load()
    assert state["step"] == (kill_at // EVERY) * EVERY  # at most checkpoint_every iterations lost
    records = []
    resumed = _train(cases, checkpoints=store, resume=state, on_step=lambda s, r: records.append(s))
    assert resumed.resumed_from == state["step"] and records == list(range(state["step"], ITERATIONS))
    reference = _train(cases)
    for name, value in reference.student.state_dict().items():
        torch.testing.assert_close(resumed.student.state_dict()[name], value, rtol=0, atol=0, msg=name)
    for name, value in reference.teacher.state_dict().items():
        torch.testing.assert_close(resumed.teacher.state_dict()[name], value, rtol=0, atol=0, msg=name)


def _kill_when_checkpointed(cmd, ws, checkpoints, timeout=300):
    """Start ``cmd`` and SIGKILL it once a checkpoint exists under ``checkpoints``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen(cmd, cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not list(checkpoints.glob("*/state.pt")):
        assert proc.poll() is None, "the stage ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_the_train_stage_resumes_its_mlflow_run_and_a_changed_param_starts_afresh(tmp_path):
    ws = stage_workspace(tmp_path / "ws")
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)  # the project root checkpoints live under
    set_params(ws, {"train": {"iterations": 60, "checkpoint_every": 20}})
    for stage in ("download", "preprocess", "split"):
        run(["python", "-m", f"stages.{stage}"], ws)
    checkpoints = ws / ".cvcl" / "checkpoints"
    _kill_when_checkpointed([sys.executable, "-m", "stages.train"], ws, checkpoints)
    client = MlflowClient(f"sqlite:///{ws / 'mlflow.db'}")
    killed = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]

    proc = run(["python", "-m", "stages.train"], ws)
    assert "resuming from iteration" in proc.stdout
    assert json.loads((ws / "models" / "mlflow_run.json").read_text())["experiment"] == "cvcl-synthetic-la"
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].info.run_id == killed.info.run_id and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(killed.info.run_id, "loss")]
    assert sorted(steps) == list(range(60))  # no gap, no duplicate
    rows = (ws / "models" / "train_log.csv").read_text().splitlines()
    assert len(rows) == 61
    assert not list(checkpoints.glob("*/state.pt"))  # a finished training removes its checkpoint

    _kill_when_checkpointed([sys.executable, "-m", "stages.train"], ws, checkpoints)
    set_params(ws, {"train": {"lr": 0.02}})
    proc = run(["python", "-m", "stages.train"], ws)
    assert "starting from iteration 0" in proc.stdout and "resuming" not in proc.stdout
    assert json.loads((ws / "models" / "mlflow_run.json").read_text())["run_id"] != killed.info.run_id
