"""A team tracking server for tests: PostgreSQL and ``mlflow server`` with basic auth on a free
loopback port, started by ``python -m cvcl.tracking.server`` as ``make server`` does, with the
user alice added the README's way. Used by the team server's and the Ray sweep's tests."""

from __future__ import annotations

import contextlib
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
from typing import Iterator

import pytest
import requests

from cvcl.tracking.server import LocalPostgres, ServerError, pg_binary
from tests.conftest import ROOT

ADMIN_PASSWORD = secrets.token_urlsafe(16)
USER, PASSWORD = "alice", secrets.token_urlsafe(16)


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TeamServer:
    """``python -m cvcl.tracking.server`` on a free loopback port, with its state in ``state``."""

    def __init__(self, state: Path, pg_user: str | None) -> None:
        self.state, self.pg_user, self.port = state, pg_user, free_port()
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


@contextlib.contextmanager
def running_team_server() -> Iterator[TeamServer]:
    """A started team server with the user alice; stopped, with its database, on exit."""
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


