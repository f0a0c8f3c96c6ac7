"""A throwaway team server: ``cvcl server`` (PostgreSQL and ``mlflow server``
with basic auth, as ``make server`` starts it) on a free loopback port, its state in a new
folder under /tmp, with one user added docs/tracking.md's way; stopped, database included, and
deleted on exit. The tests of the team server and the tracking load benchmark
(``benchmarks/tracking_load.py``) start it with :func:`ephemeral_server`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from cvcl.tracking.server import LocalPostgres, ServerError, pg_binary

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_os_user() -> str | None:
    """Who runs PostgreSQL: this process's user (None), or an unprivileged one when this process
    is root (PostgreSQL refuses root). :class:`ServerError` where PostgreSQL cannot be started."""
    for program in ("initdb", "pg_ctl"):
        pg_binary(program)
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name).pw_name
        except KeyError:
            continue
    raise ServerError("PostgreSQL refuses to run as root, and there is no user postgres or nobody to run it")


class EphemeralServer:
    """``cvcl server`` on a free loopback port, with its state in ``state``;
    ``user``/``password`` is the account :meth:`api` and :meth:`env` use."""

    def __init__(
        self,
        state: Path,
        pg_user: str | None,
        admin_password: str,
        user: str,
        password: str,
        workers: int = 1,
        args: tuple[str, ...] = (),
    ) -> None:
        self.state, self.pg_user, self.port, self.args = state, pg_user, free_port(), tuple(args)
        self.admin_password, self.user, self.password, self.workers = admin_password, user, password, workers
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = state.parent / f"{state.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> None:
        """Start it and wait (at most ``timeout_s`` seconds) until it answers /health."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_AUTH_ADMIN_PASSWORD"] = self.admin_password
        cmd = [
            sys.executable,
            "-m",
            "cvcl.commands",
            "server",
            "--state-dir",
            str(self.state),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        cmd += ["--pg-user", self.pg_user] if self.pg_user else []
        cmd += list(self.args)
        with open(self.log, "a") as log:
            # its own session: Ctrl-C in a terminal reaches the caller only, which stops the
            # server in order; and :meth:`stop` can reach mlflow's workers if the wrapper is gone
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"the server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.uri}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(1)
        raise ServerError(f"the server did not answer within {timeout_s:.0f} s:\n{self.log.read_text()[-3000:]}")

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

    def add_user(self, user: str, password: str) -> None:
        """docs/tracking.md's way to add a teammate: the admin posts to the users API."""
        created = requests.post(
            f"{self.uri}/api/2.0/mlflow/users/create",
            auth=("admin", self.admin_password),
            json={"username": user, "password": password},
            timeout=30,
        )
        if created.status_code != 200:
            raise ServerError(f"adding the user {user!r} failed (HTTP {created.status_code}): {created.text[:300]}")

    def api(self, endpoint: str, body: dict | None = None, **params) -> dict:
        """A REST call as :attr:`user`: GET with ``params``, or POST of ``body``."""
        url, auth = f"{self.uri}/api/2.0/mlflow/{endpoint}", (self.user, self.password)
        response = (
            requests.post(url, json=body, auth=auth, timeout=30)
            if body is not None
            else requests.get(url, params=params, auth=auth, timeout=30)
        )
        response.raise_for_status()
        return response.json()

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """What a teammate exports to log to this server (as :attr:`user` unless told)."""
        return {
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": user or self.user,
            "MLFLOW_TRACKING_PASSWORD": password or self.password,
        }


@contextlib.contextmanager
def ephemeral_server(
    admin_password: str, user: str, password: str, workers: int = 1, args: tuple[str, ...] = ()
) -> Iterator[EphemeralServer]:
    """A started team server (``args``: more options of ``cvcl server``) with the
    account ``user``; stopped, with its database, and its
    folder deleted on exit (an error or Ctrl-C included). :class:`ServerError` where PostgreSQL
    cannot be started or the server does not come up."""
    pg_user = postgres_os_user()
    # under /tmp, not a private temporary folder (pytest's are mode 700, root's): the PostgreSQL
    # user must enter it, and its socket path must stay short
    state = Path(tempfile.mkdtemp(prefix="cvcl-srv-", dir="/tmp"))
    state.chmod(0o711)
    server = EphemeralServer(state, pg_user, admin_password, user, password, workers, args)
    try:
        server.start()
        server.add_user(user, password)
        yield server
    finally:
        server.stop()
        cluster = server.cluster()
        if cluster.data.is_dir() and cluster.running():  # the wrapper did not get to stop it
            cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
        server.log.unlink(missing_ok=True)
