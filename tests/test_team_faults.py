"""The team server goes away under a running training: the server's processes killed, then its
PostgreSQL, each restarted 20 s later; then a server that stays away past the stage's bounded
wait (``CVCL_TRACKING_WAIT_S``). The store's rows are counted in PostgreSQL itself.

One team server and one prepared workspace for the module (tests/team_server.py); the tests run
in order and leave the server running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvcl.tracking.server import DB_USER, PG_PORT
from tests.helpers import env as stage_env
from tests.helpers import run, set_params, stage_workspace
from tests.team_server import TeamServer, running_team_server

pytestmark = pytest.mark.slow

ITERATIONS = 30
CHECKPOINT_EVERY = 5  # each checkpoint sends the buffered metrics: the stage meets the outage there
OUTAGE_S = 20


@pytest.fixture(scope="module")
def server():
    with running_team_server() as team:
        yield team


@pytest.fixture(scope="module")
def workspace(server, tmp_path_factory) -> Path:
    ws = stage_workspace(tmp_path_factory.mktemp("faults") / "ws")
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True)  # where the checkpoints live
    set_params(ws, {"method": "supervised", "train": {"iterations": ITERATIONS, "checkpoint_every": CHECKPOINT_EVERY}})
    for stage in ("download", "preprocess", "split"):
        run(["python", "-m", f"stages.{stage}"], ws)
    return ws


def _start_train(ws: Path, server: TeamServer, **extra: str) -> subprocess.Popen:
    env = {**stage_env(), **server.env(), **extra}
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train"],
        cwd=ws,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _sql(server: TeamServer, query: str, *args) -> list[tuple]:
    import psycopg

    cluster = server.cluster()
    with psycopg.connect(host=str(cluster.folder), port=PG_PORT, user=DB_USER, dbname="mlflow") as con:
        return con.execute(query, args).fetchall()


def _training_run(server: TeamServer) -> str | None:
    rows = _sql(server, "SELECT run_uuid FROM runs WHERE status = 'RUNNING' ORDER BY start_time DESC LIMIT 1")
    return rows[0][0] if rows else None


def _stored_steps(server: TeamServer, run_id: str, key: str = "loss") -> list[int]:
    """Every stored row of ``key``, duplicates included (PostgreSQL's own count)."""
    return sorted(r[0] for r in _sql(server, "SELECT step FROM metrics WHERE run_uuid = %s AND key = %s", run_id, key))


def _wait_for_step(server: TeamServer, proc: subprocess.Popen, step: int, timeout_s: float = 300) -> str:
    """The id of the training's run once the store holds its ``loss`` at ``step``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"train ended early:\n{proc.communicate()[1][-3000:]}"
        run_id = _training_run(server)
        if run_id and max(_stored_steps(server, run_id), default=-1) >= step:
            return run_id
        time.sleep(0.5)
    raise AssertionError(f"the store did not reach step {step} within {timeout_s:.0f} s")


def _finish(proc: subprocess.Popen, timeout_s: float = 600) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"train did not end within {timeout_s:.0f} s:\n{err[-3000:]}") from None
    return proc.returncode, out, err


def _kill_server(server: TeamServer) -> None:
    """SIGKILL to the server's wrapper, ``mlflow server`` and its workers (PostgreSQL, its own
    daemon, stays up)."""
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    server.proc = None


def _kill_postgres(server: TeamServer) -> None:
    pid = int((server.cluster().data / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while server.cluster().running() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_the_server_and_then_its_database_killed_mid_run_lose_no_metric_point(server, workspace):
    proc = _start_train(workspace, server)
    run_id = _wait_for_step(server, proc, 4)
    _kill_server(server)
    time.sleep(OUTAGE_S)
    server.start()
    resumed_at = max(_stored_steps(server, run_id))
    _wait_for_step(server, proc, resumed_at + 2 * CHECKPOINT_EVERY)
    _kill_postgres(server)
    time.sleep(OUTAGE_S)
    server.cluster().start()
    code, out, err = _finish(proc)
    assert code == 0, err[-3000:]
    assert err.count("is away") == 2 and err.count("answers again") == 2, err[-2000:]
    assert _sql(server, "SELECT status FROM runs WHERE run_uuid = %s", run_id) == [("FINISHED",)]
    assert _stored_steps(server, run_id) == list(range(ITERATIONS))  # every point, once
    record = json.loads((workspace / "models" / "mlflow_run.json").read_text())
    assert record["run_id"] == run_id


def test_a_server_away_past_the_bounded_wait_fails_the_stage_in_one_line_and_the_rerun_resumes(server, workspace):
    proc = _start_train(workspace, server, CVCL_TRACKING_WAIT_S="5")
    run_id = _wait_for_step(server, proc, 4)
    _kill_server(server)
    code, _, err = _finish(proc)
    server.start()
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert lines[-1].startswith("error: MLflow tracking server http://127.0.0.1:") and "away for" in lines[-1]
    assert "rerun the stage to resume" in lines[-1]
    held = _stored_steps(server, run_id)
    assert held and max(held) < ITERATIONS - 1

    rerun = _start_train(workspace, server)
    code, out, err = _finish(rerun)
    assert code == 0, err[-3000:]
    assert "resuming from iteration" in out
    assert json.loads((workspace / "models" / "mlflow_run.json").read_text())["run_id"] == run_id
    assert _sql(server, "SELECT status FROM runs WHERE run_uuid = %s", run_id) == [("FINISHED",)]
    assert _stored_steps(server, run_id) == list(range(ITERATIONS))
