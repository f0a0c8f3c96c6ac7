import json

import pytest
from mlflow import MlflowClient

from cvcl.tracking.naming import data_version, run_name
from cvcl.tracking.run import open_run, stage_status, start_run
from cvcl.tracking.store import project_root


def test_root_of_a_queued_experiment_is_the_main_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"))
    assert project_root() == tmp_path / "repo"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    assert project_root() == tmp_path / "repo"


def test_run_names_are_readable():
    weights = {"loss.pcl_weight": 1.0, "loss.vcl_weight": 1.0}
    assert run_name("cvcl", 16, 2, weights) == "cvcl-l16-pcl1-vcl1-s2"
    assert run_name("cvcl", 8, 1, {"loss.pcl_weight": 0.0, "loss.vcl_weight": 0.5}) == "cvcl-l8-pcl0-vcl0.5-s1"
    assert run_name("supervised", 8, 3, weights) == "supervised-l8-s3"


def test_data_version_is_read_from_dvc_lock(tmp_path):
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        "schema: '2.0'\nstages:\n  preprocess:\n    cmd: x\n    outs:\n"
        "    - path: data/processed\n      md5: abc.dir\n      size: 1\n"
    )
    assert data_version(lock) == "abc.dir"
    assert data_version(tmp_path / "missing.lock") is None


def test_a_run_spans_stages_and_ends_finished(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "happy-exp")
    run = start_run(
        "toy", "cvcl-l2-pcl1-vcl1-s1", {"labeled": 2, "train.patch": [32, 32, 16]}, {"dataset": "toy", "method": "cvcl"}
    )
    with stage_status(run):
        for step in range(5):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step)
    run.to_file(tmp_path / "run.json")
    again = open_run(tmp_path / "run.json", {"infer.stride": [8, 8, 8]})
    assert again.run_id == run.run_id
    with stage_status(again):
        again.log_metrics({"dice": 0.9})
    client = MlflowClient(mlflow_store)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "cvcl-l2-pcl1-vcl1-s1"
    assert got.data.params["labeled"] == "2" and got.data.params["train.patch"] == "[32, 32, 16]"
    assert got.data.params["infer.stride"] == "[8, 8, 8]"
    assert got.data.tags["dataset"] == "toy" and got.data.tags["dvc_exp_name"] == "happy-exp"
    assert "git_commit" in got.data.tags
    assert len(client.get_metric_history(run.run_id, "loss")) == 5
    assert client.get_experiment(got.info.experiment_id).name == "cvcl-toy"


def test_changed_downstream_params_fork_the_run(mlflow_store, tmp_path):
    run = start_run("toy", "r", {"labeled": 2}, {})
    with stage_status(run):
        run.log_metrics({"loss": 0.5}, 0)
        run.log_metrics({"loss": 0.4}, 1)
    run.to_file(tmp_path / "run.json")
    first = open_run(tmp_path / "run.json", {"infer.largest_component": False})
    assert first.run_id == run.run_id
    fork = open_run(tmp_path / "run.json", {"infer.largest_component": True})
    assert fork.run_id != run.run_id
    client = MlflowClient(mlflow_store)
    f = client.get_run(fork.run_id)
    assert f.data.params == {"labeled": "2", "infer.largest_component": "True"}
    assert f.data.tags["cvcl.forked_from"] == run.run_id
    assert [m.value for m in client.get_metric_history(fork.run_id, "loss")] == [0.5, 0.4]
    # the original keeps its own record
    assert client.get_run(run.run_id).data.params["infer.largest_component"] == "False"


def test_a_failing_stage_marks_the_run_failed(mlflow_store):
    run = start_run("toy", "r", {}, {})
    with pytest.raises(RuntimeError):
        with stage_status(run):
            raise RuntimeError("boom")
    assert MlflowClient(mlflow_store).get_run(run.run_id).info.status == "FAILED"


def test_a_run_unknown_to_the_store_is_recreated(mlflow_store, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "0" * 32, "experiment": "cvcl-toy", "run_name": "x"}))
    run = open_run(tmp_path / "run.json", {"evaluate.distance_unit": "voxel"})
    got = MlflowClient(mlflow_store).get_run(run.run_id)
    assert got.data.tags["cvcl.recovered_from"] == "0" * 32


def test_a_terminated_stage_marks_its_run_failed(tmp_path):
    """SIGTERM (``dvc queue kill``) must not leave the run RUNNING."""
    import os
    import signal
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "stage.py"
    script.write_text(
        "import time\n"
        "from cvcl.entrypoint import run_stage\n"
        "from cvcl.tracking.run import start_run, stage_status\n"
        "def main():\n"
        "    run = start_run('toy', 'r', {}, {})\n"
        "    with stage_status(run):\n"
        "        print(run.run_id, flush=True)\n"
        "        time.sleep(120)\n"
        "run_stage(main)\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    run_id = proc.stdout.readline().strip()  # printed from inside the stage
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert MlflowClient(uri).get_run(run_id).info.status == "FAILED"


def test_buffered_metrics_reach_the_store_every_flush_interval(mlflow_store, monkeypatch):
    from mlflow import MlflowClient

    from cvcl.tracking import run as run_module

    clock = [1000.0]  # a fake monotonic clock: no test depends on real time
    monkeypatch.setattr(run_module.time, "monotonic", lambda: clock[0])
    run = run_module.start_run("toy", "flush-test", {}, {})
    client = MlflowClient(mlflow_store)
    for step in range(10):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step)
    assert client.get_metric_history(run.run_id, "loss") == []  # still buffered
    clock[0] += run_module.FLUSH_SECONDS
    run.log_metrics({"loss": 0.01}, 10)
    assert len(client.get_metric_history(run.run_id, "loss")) == 11  # a kill now loses nothing


def test_a_run_left_running_by_a_killed_stage_is_closed_by_the_next_one(mlflow_store, tmp_path):
    import subprocess
    import sys

    from mlflow import MlflowClient

    from cvcl.tracking.run import start_run
    from tests.conftest import ROOT

    script = (
        "import os, signal\n"
        "from cvcl.tracking.run import start_run\n"
        "run = start_run('toy', 'doomed', {}, {})\n"
        "run.set_status('RUNNING')\n"
        "print(run.run_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**__import__("os").environ, "MLFLOW_TRACKING_URI": mlflow_store}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == -9
    doomed = proc.stdout.split()[0]
    client = MlflowClient(mlflow_store)
    assert client.get_run(doomed).info.status == "RUNNING"  # nothing could close it
    start_run("toy", "next", {}, {})
    closed = client.get_run(doomed)
    assert closed.info.status == "KILLED" and "ended without closing the run" in closed.data.tags["cvcl.end_reason"]
