"""The team tracking server for real: PostgreSQL and `mlflow server` with basic auth on loopback,
started by ``python -m cvcl.tracking.server`` as ``make server`` does, and the pipeline's stages
logging to it through MLFLOW_TRACKING_URI/USERNAME/PASSWORD alone.

Services start once for the module; the restart test comes last, as it stops and restarts them.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from cvcl.tracking.server import LocalPostgres, ServerError, pg_binary
from tests.conftest import ROOT
from tests.helpers import run, stage_workspace

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = secrets.token_urlsafe(16)
USER, PASSWORD = "alice", secrets.token_urlsafe(16)
STAGES = ("download", "preprocess", "split", "train", "infer", "evaluate")


def _pg_user() -> str | None:
    """Who runs PostgreSQL: this process's user, or an unprivileged one when the tests run as root
    (PostgreSQL refuses root). Skips, saying why, where PostgreSQL cannot be started at all."""
    try:
        for program in ("initdb", "pg_ctl"):
            pg_binary(program)
    except ServerError as exc:
        pytest.skip(f"PostgreSQL cannot be started here: {exc}")
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    pytest.skip("PostgreSQL refuses to run as root, and there is no user postgres or nobody to run it")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TeamServer:
    """``python -m cvcl.tracking.server`` on a free loopback port, with its state in ``state``."""

    def __init__(self, state: Path, pg_user: str | None) -> None:
        self.state, self.pg_user, self.port = state, pg_user, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = state.parent / f"{state.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        cmd = [sys.executable, "-m", "cvcl.tracking.server", "--state-dir", str(self.state),
               "--port", str(self.port), "--workers", "1"]
        cmd += ["--pg-user", self.pg_user] if self.pg_user else []
        with open(self.log, "a") as log:
            # its own session: the stop below can reach mlflow's workers if the wrapper is gone
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.uri}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(1)
        raise AssertionError(f"the server did not answer within {timeout_s:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: the wrapper ends mlflow, then PostgreSQL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def cluster(self) -> LocalPostgres:
        return LocalPostgres(self.state / "postgres", self.pg_user)

    def api(self, endpoint: str, body: dict | None = None, **params) -> dict:
        """A REST call as alice: GET with ``params``, or POST of ``body``."""
        url, auth = f"{self.uri}/api/2.0/mlflow/{endpoint}", (USER, PASSWORD)
        response = (requests.post(url, json=body, auth=auth, timeout=30) if body is not None
                    else requests.get(url, params=params, auth=auth, timeout=30))
        response.raise_for_status()
        return response.json()

    def env(self, user: str = USER, password: str = PASSWORD) -> dict[str, str]:
        """What a teammate exports to log to this server."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": password}


@pytest.fixture(scope="module")
def server():
    pg_user = _pg_user()
    # under /tmp, not pytest's tmp_path (mode 700, root's): the PostgreSQL user must enter it,
    # and its socket path must stay short
    state = Path(tempfile.mkdtemp(prefix="cvcl-srv-", dir="/tmp"))
    state.chmod(0o711)
    team = TeamServer(state, pg_user)
    try:
        team.start()
        # the README's way to add a teammate: the admin posts to the users API
        created = requests.post(f"{team.uri}/api/2.0/mlflow/users/create", auth=("admin", ADMIN_PASSWORD),
                                json={"username": USER, "password": PASSWORD}, timeout=30)
        assert created.status_code == 200, created.text
        yield team
    finally:
        team.stop()
        cluster = team.cluster()
        if cluster.data.is_dir() and cluster.running():  # the wrapper did not get to stop it
            cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
        team.log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory):
    """A tiny pipeline run (4 iterations) logged to the server as ``alice``; its workspace."""
    ws = stage_workspace(tmp_path_factory.mktemp("team") / "ws")
    for stage in STAGES:
        run(["python", "-m", f"stages.{stage}"], ws, extra_env=server.env())
    return ws


def _experiment_runs(server: TeamServer, record: dict) -> list[dict]:
    experiment = server.api("experiments/get-by-name", experiment_name=record["experiment"])["experiment"]
    return server.api("runs/search", {"experiment_ids": [experiment["experiment_id"]]}).get("runs", [])


def test_a_pipeline_run_lands_as_one_finished_run_with_params_curves_metrics_and_artifacts(server, pipeline):
    record = json.loads((pipeline / "models" / "mlflow_run.json").read_text())
    assert record["tracking_uri"] == server.uri
    runs = _experiment_runs(server, record)
    assert [r["info"]["run_id"] for r in runs] == [record["run_id"]]
    info, data = runs[0]["info"], runs[0]["data"]
    assert info["status"] == "FINISHED"
    params = {p["key"]: p["value"] for p in data["params"]}
    assert params["train.iterations"] == "4" and params["method"] == "cvcl"
    assert "infer.stride" in params and "evaluate.distance_unit" in params  # every stage logged to it
    curve = server.api("metrics/get-history", run_id=record["run_id"], metric_key="loss")["metrics"]
    assert len({m["step"] for m in curve}) == len(curve) == 4  # one point per iteration
    metrics = {m["key"]: m["value"] for m in data["metrics"]}
    summary = json.loads((pipeline / "metrics" / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(summary["dice"])
    assert {"train_seconds", "infer_seconds_per_case"} <= metrics.keys()

    listed = {f["path"] for f in server.api("artifacts/list", run_id=record["run_id"])["files"]}
    assert {"train_log.csv", "model.pt", "metrics.json", "per_case.csv", "overlays"} <= listed
    # proxied: read back through the server, and stored in the server's artifacts folder
    fetched = requests.get(f"{server.uri}/get-artifact", params={"run_uuid": record["run_id"], "path": "metrics.json"},
                           auth=(USER, PASSWORD), timeout=30)
    assert fetched.status_code == 200 and fetched.json() == summary
    assert list((server.state / "artifacts").rglob("model.pt"))


@pytest.mark.parametrize("case", ["wrong password", "server down"])
def test_a_refused_login_or_a_missing_server_stops_train_with_one_line_before_training(
        server, pipeline, tmp_path, case):
    ws = stage_workspace(tmp_path / "ws")
    shutil.copytree(pipeline / "data", ws / "data")  # processed cases and split: train's inputs
    record = json.loads((pipeline / "models" / "mlflow_run.json").read_text())
    before = len(_experiment_runs(server, record))
    env = server.env(password="not-" + PASSWORD) if case == "wrong password" else {
        **server.env(), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}"}
    started = time.monotonic()
    proc = run(["python", "-m", "stages.train"], ws, check=False, extra_env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    expected = ("MLFLOW_TRACKING_USERNAME/PASSWORD (user 'alice') were refused (HTTP 401)"
                if case == "wrong password" else "cannot be reached ([Errno 111] Connection refused)")
    assert lines[-1].startswith(f"error: MLflow tracking server {env['MLFLOW_TRACKING_URI']}: ")
    assert expected in lines[-1]
    assert not (ws / "models" / "model.pt").exists() and not (ws / "models" / "train_log.csv").exists()
    assert time.monotonic() - started < 120  # no minutes of MLflow's own retries
    assert len(_experiment_runs(server, record)) == before


def test_the_runs_and_logins_survive_a_server_restart(server, pipeline):
    record = json.loads((pipeline / "models" / "mlflow_run.json").read_text())
    before = server.api("runs/get", run_id=record["run_id"])["run"]
    server.stop()
    assert not server.cluster().running()  # the wrapper stopped its database with it
    server.start()
    after = server.api("runs/get", run_id=record["run_id"])["run"]  # alice's login is kept too
    assert after["info"]["status"] == "FINISHED"
    assert after["data"]["metrics"] == before["data"]["metrics"]
    assert after["data"]["params"] == before["data"]["params"]
    assert len(server.api("metrics/get-history", run_id=record["run_id"], metric_key="loss")["metrics"]) == 4
