"""Where runs are logged: the tracking URI, the experiment, and safe access to SQLite.

The default store is ``sqlite:///<root>/mlflow.db`` where ``<root>`` is the repository root.
DVC runs queued experiments in ``<root>/.dvc/tmp/exps/...`` workspaces and sets ``DVC_ROOT``
to that workspace, so the root is taken from the part before ``.dvc/tmp/exps``: every run,
queued or not, lands in the same store. ``MLFLOW_TRACKING_URI`` overrides all of this (a
team's tracking server, say).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

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
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


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


# How long a stage waits for a tracking server that went away (restarted, its database down)
# before it fails: long enough for a restart by hand, short enough that a dead server does not
# hold a training for hours. CVCL_TRACKING_WAIT_S overrides it.
SERVER_WAIT_S = 600.0
# HTTP answers that mean "not now" rather than "no": MLflow's own list of transient codes
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def server_wait_s() -> float:
    """The bound on waiting for the tracking server, in seconds (``$CVCL_TRACKING_WAIT_S``)."""
    text = os.environ.get("CVCL_TRACKING_WAIT_S", "")
    try:
        value = float(text) if text else SERVER_WAIT_S
    except ValueError:
        raise CvclError(f"CVCL_TRACKING_WAIT_S={text!r}: expected a number of seconds") from None
    if value < 0:
        raise CvclError(f"CVCL_TRACKING_WAIT_S={text!r}: expected a number of seconds >= 0")
    return value


def _locked(exc: Exception) -> bool:
    text = str(exc).lower()  # MLflow wraps the sqlite error in its own exception types
    return "locked" in text or "busy" in text


def transient(exc: Exception) -> bool:
    """Whether ``exc`` says the tracking server is away for now (no connection, a timeout, or a
    transient HTTP status such as the 503 of a server whose database is down), rather than
    refusing the request."""
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    text = str(exc)
    # MLflow's REST client, after its own retries: "API request to ... failed with exception
    # ..." (no connection; or the 503s of a server whose database is down), or "... failed
    # with error code 5xx != 200" (an answer it could not read as a refusal)
    if "API request to" in text and "failed with exception" in text:
        return True
    code = re.search(r"failed with error code (\d+) != 200", text)
    if code is not None and int(code.group(1)) in TRANSIENT_STATUS:
        return True
    # a server whose database connections are all busy answers 400 (MLflow maps the pool's
    # timeout to a bad request): busy, not a refusal
    return "QueuePool limit" in text


def _errno(text: str) -> str | None:
    """The ``[Errno N] ...`` part of a connection error's long message, or None."""
    found = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    return found.group(0).strip() if found else None


def _one_line(exc: Exception, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    errno = _errno(text)
    if errno:
        return errno
    code = re.search(r"error code (\d+)", text)
    return f"HTTP {code.group(1)}" if code else text[:limit]


def with_retries(call: Callable[[], T], attempts: int = 8, base_delay: float = 0.2) -> T:
    """Run ``call`` against the tracking store, retrying

    - with jittered backoff while SQLite reports a locked database (``attempts`` tries);
    - while the tracking server is away (:func:`transient`: down, restarting, its database
      down), with backoff up to 30 s between tries, for at most :func:`server_wait_s`; then a
      :class:`TrackingServerError` in one line. Repeating a call is safe: MLflow ignores a
      metric it already holds (same key, step, timestamp and value), a param logged again
      with its value, and a tag or status set again.
    """
    waited_since: float | None = None
    pause = 1.0
    for attempt in itertools.count():
        try:
            result = call()
        except Exception as exc:
            if _locked(exc) and attempt + 1 < attempts:
                time.sleep(base_delay * (2**attempt) * (0.5 + random.random()))
                continue
            if not transient(exc):
                raise
            now = time.monotonic()
            if waited_since is None:
                waited_since = now
                print(
                    f"note: the MLflow tracking server {tracking_uri()} is away ({_one_line(exc)}); "
                    f"retrying for up to {server_wait_s():.0f} s (CVCL_TRACKING_WAIT_S)",
                    file=sys.stderr,
                    flush=True,
                )
            if now - waited_since >= server_wait_s():
                raise TrackingServerError(
                    tracking_uri(),
                    f"away for {now - waited_since:.0f} s ({_one_line(exc)}); the checkpoint keeps "
                    "the run: restart the server and rerun the stage to resume it",
                ) from None
            time.sleep(min(pause, max(0.0, waited_since + server_wait_s() - now)) * (0.75 + 0.5 * random.random()))
            pause = min(pause * 2, 30.0)
            continue
        if waited_since is not None:
            print(
                f"note: the MLflow tracking server answers again after {time.monotonic() - waited_since:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        return result
    raise AssertionError("unreachable")


def quiet_mlflow_logs() -> None:
    """Hide the store's migration chatter (warnings and errors still show), and keep MLflow's
    usage telemetry off: stages and tests must not reach out to the network on their own."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's client retries each request for about 4 minutes on its own; with_retries owns
    # the wait for a server that went away (bounded by CVCL_TRACKING_WAIT_S, said in one
    # line), so each request gives up after a few seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):
        logging.getLogger(name).setLevel(logging.WARNING)


class TrackingServerError(CvclError):
    """The tracking server named by ``MLFLOW_TRACKING_URI`` cannot be used (down, or a refused login)."""

    def __init__(self, uri: str, problem: str) -> None:
        self.uri = uri
        super().__init__(f"MLflow tracking server {uri}: {problem}")


def check_server(uri: str, timeout_s: float = 60.0) -> None:
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
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            params={"max_results": 1},
            max_retries=2,
            backoff_factor=1,
            timeout=timeout_s,
        )
    except Exception as exc:  # requests' connection errors, wrapped by MLflow in its own type
        text = " ".join(str(exc).split())
        reason = _errno(text) or (f"no answer within {timeout_s:.0f} s" if "timed out" in text.lower() else text[:150])
        raise TrackingServerError(
            uri, f"cannot be reached ({reason}); start it (make server) or fix MLFLOW_TRACKING_URI"
        ) from None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if response.status_code == 401:
        problem = (
            f"MLFLOW_TRACKING_USERNAME/PASSWORD (user {user!r}) were refused (HTTP 401)"
            if user
            else "it needs a login (HTTP 401) and MLFLOW_TRACKING_USERNAME is not set"
        )
        raise TrackingServerError(
            uri,
            f"{problem}; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "to your account on this server (its admin adds accounts)",
        )
    if response.status_code == 403:
        raise TrackingServerError(
            uri, f"user {user!r} may not read experiments (HTTP 403); ask the server's admin for a permission"
        )
    if response.status_code != 200:
        text = " ".join(response.text.split())[:200]
        raise TrackingServerError(
            uri, f"answered HTTP {response.status_code} ({text}); is this an MLflow tracking server?"
        )
