"""Killing `dvc repro` stops the stage it runs: no orphan training that later marks its run
FINISHED (DVC starts stages through `sh -c`, which survives DVC)."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers import TINY, copy_repository, env, set_params

pytestmark = pytest.mark.slow


def _find(pattern: bytes) -> int | None:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if pattern in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
    return None


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_sigterm_to_dvc_repro_ends_the_training_stage_and_fails_its_run(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo)
    marker = f"orphan-test-{os.getpid()}"
    set_params(repo, {**TINY, "train": {**TINY["train"], "iterations": 100000, "device": "cpu"},
                      "download": {**TINY["download"], "synthetic": {**TINY["download"]["synthetic"], "seed": 11}}})
    # a unique word in the stage's command line, to find this test's process among others
    dvc_yaml = (repo / "dvc.yaml").read_text().replace("cmd: python -m stages.train",
                                                       f"cmd: python -m stages.train --{marker}")
    (repo / "dvc.yaml").write_text(dvc_yaml)
    subprocess.run(["git", "commit", "-qam", "long training"], cwd=repo, env=env(), check=True)
    dvc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        stage = _wait(lambda: _find(marker.encode()), 300, "the train stage to start")
        client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        _wait(lambda: [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])],
              120, "the MLflow run")
        dvc.send_signal(signal.SIGTERM)
        dvc.wait(timeout=60)
        _wait(lambda: not Path(f"/proc/{stage}").exists() or b"zombie" in Path(f"/proc/{stage}/status").read_bytes().lower(),
              60, "the train stage to end")
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert [r.info.status for r in runs] == ["FAILED"]
        assert not (repo / "models" / "model.pt").exists()
    finally:
        if dvc.poll() is None:
            dvc.kill()
        leftover = _find(marker.encode())
        if leftover:
            os.kill(leftover, signal.SIGKILL)
