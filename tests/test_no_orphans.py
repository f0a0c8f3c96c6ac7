"""Killing `dvc repro` stops the stage it runs: no orphan training that later marks its run
FINISHED (DVC starts stages through `sh -c`, which survives DVC)."""

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cvcl.entrypoint import process_ended
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


def _wait(condition, what: str, alive=lambda: True, ceiling_s: float = 900):
    """Poll `condition` while `alive()` holds. The ceiling only guards against a hang: on a
    loaded CI machine starting a stage can take minutes, so no tighter limit is a fair test."""
    deadline = time.monotonic() + ceiling_s
    while True:
        value = condition()
        if value:
            return value
        assert alive(), f"the process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {ceiling_s:.0f} s"
        time.sleep(0.2)


def _run_statuses(db: Path) -> list[str]:
    """Run statuses read straight from the store, read-only: an MLflow client here would create
    and migrate the database while the stage does the same."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return [row[0] for row in con.execute("SELECT status FROM runs")]
    except sqlite3.Error:
        return []


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_sigterm_to_dvc_repro_ends_the_training_stage_and_fails_its_run(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo)
    marker = f"orphan-test-{os.getpid()}"
    set_params(
        repo,
        {
            **TINY,
            "train": {**TINY["train"], "iterations": 100000, "device": "cpu"},
            "download": {**TINY["download"], "synthetic": {**TINY["download"]["synthetic"], "seed": 11}},
        },
    )
    # a unique word in the stage's command line, to find this test's process among others
    dvc_yaml = (
        (repo / "dvc.yaml")
        .read_text()
        .replace("cmd: python -m stages.train", f"cmd: python -m stages.train --{marker}")
    )
    (repo / "dvc.yaml").write_text(dvc_yaml)
    subprocess.run(["git", "commit", "-qam", "long training"], cwd=repo, env=env(), check=True)
    dvc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stage = _wait(lambda: _find(marker.encode()), "the train stage started", alive=lambda: dvc.poll() is None)
        _wait(
            lambda: _run_statuses(repo / "mlflow.db"), "the MLflow run", alive=lambda: Path(f"/proc/{stage}").exists()
        )
        # a pidfd: told of the stage's end even as an unreaped zombie, and never of a later
        # process that reuses its pid (pids wrap at 32768 here, and the suite starts thousands)
        stage_ended = process_ended(stage)
        dvc.send_signal(signal.SIGTERM)
        dvc.wait(timeout=300)
        assert stage_ended(300), "the train stage still runs 300 s after dvc ended"
        client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert [r.info.status for r in runs] == ["FAILED"]
        assert not (repo / "models" / "model.pt").exists()
    finally:
        if dvc.poll() is None:
            dvc.kill()
        leftover = _find(marker.encode())
        if leftover:
            os.kill(leftover, signal.SIGKILL)
