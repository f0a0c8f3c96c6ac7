"""Where runs are logged: the tracking URI, the experiment, and safe access to SQLite.

The default store is ``sqlite:///<root>/mlflow.db`` where ``<root>`` is the repository root.
DVC runs queued experiments in ``<root>/.dvc/tmp/exps/...`` workspaces and sets ``DVC_ROOT``
to that workspace, so the root is taken from the part before ``.dvc/tmp/exps``: every run,
queued or not, lands in the same store. ``MLFLOW_TRACKING_URI`` overrides all of this (a
team's tracking server, say).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from filelock import FileLock

from cvcl.errors import CvclError

T = TypeVar("T")
_QUEUE_MARK = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep


def project_root() -> Path:
    """The repository root whose ``mlflow.db`` collects every run."""
    root = os.environ.get("DVC_ROOT")
    if root:
        root = os.path.abspath(root)
        if _QUEUE_MARK in root + os.sep:
            root = root[: (root + os.sep).index(_QUEUE_MARK)]
        return Path(root)
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
        return Path(top.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return Path.cwd()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise store creation between processes (parallel queue workers start together)."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        yield


def prepare_sqlite(uri: str) -> None:
    """Switch a SQLite store to write-ahead logging, so readers never block the writers.

    The journal mode is stored in the database file, so this holds for every later connection.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    con = sqlite3.connect(path, timeout=60)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def with_retries(call: Callable[[], T], attempts: int = 8, base_delay: float = 0.2) -> T:
    """Run ``call``, retrying with jittered backoff while SQLite reports a locked database."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # MLflow wraps the sqlite error in its own exception types
            text = str(exc).lower()
            if attempt + 1 == attempts or not ("locked" in text or "busy" in text):
                raise
            time.sleep(base_delay * (2 ** attempt) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def quiet_mlflow_logs() -> None:
    """Hide the store's migration chatter (warnings and errors still show), and keep MLflow's
    usage telemetry off: stages and tests must not reach out to the network on their own."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)


class TrackingServerError(CvclError):
    """The tracking server named by ``MLFLOW_TRACKING_URI`` cannot be used (down, or a refused login)."""

    def __init__(self, uri: str, problem: str) -> None:
        self.uri = uri
        super().__init__(f"MLflow tracking server {uri}: {problem}")


def check_server(uri: str, timeout_s: float = 15.0) -> None:
    """Fail fast, in one line, when the tracking server at ``uri`` is down or refuses this login.

    Without it, a stage would learn this at its first MLflow call, after MLflow's own retries
    (minutes), as a traceback. Stores that are not an HTTP server (SQLite, a database URI) are
    left to MLflow.
    """
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "GET",
                                params={"max_results": 1}, max_retries=2, backoff_factor=1, timeout=timeout_s)
    except Exception as exc:  # requests' connection errors, wrapped by MLflow in its own type
        text = " ".join(str(exc).split())
        errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)
        reason = (errno.group(0).strip() if errno else
                  f"no answer within {timeout_s:.0f} s" if "timed out" in text.lower() else text[:150])
        raise TrackingServerError(uri, f"cannot be reached ({reason}); start it (make server) "
                                       "or fix MLFLOW_TRACKING_URI") from None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if response.status_code == 401:
        problem = (f"MLFLOW_TRACKING_USERNAME/PASSWORD (user {user!r}) were refused (HTTP 401)" if user
                   else "it needs a login (HTTP 401) and MLFLOW_TRACKING_USERNAME is not set")
        raise TrackingServerError(uri, f"{problem}; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                                       "to your account on this server (its admin adds accounts)")
    if response.status_code == 403:
        raise TrackingServerError(uri, f"user {user!r} may not read experiments (HTTP 403); "
                                       "ask the server's admin for a permission")
    if response.status_code != 200:
        text = " ".join(response.text.split())[:200]
        raise TrackingServerError(uri, f"answered HTTP {response.status_code} ({text}); is this an MLflow "
                                       "tracking server?")
