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
from typing import Any, Literal, TypeVar

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
# MLflow's error codes for those answers (mlflow.exceptions.ERROR_CODE_TO_HTTP_STATUS). A
# RestException carries the server's code; a plain MlflowException gets INTERNAL_ERROR by default,
# so only the codes nothing local defaults to are taken from it
_AWAY_REST_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"}
)
_AWAY_LOCAL_CODES = _AWAY_REST_CODES - {"INTERNAL_ERROR"}
# SQLite's primary result codes (the extended ones, e.g. SQLITE_BUSY_SNAPSHOT, keep them in the low byte)
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
# PostgreSQL SQLSTATEs: another transaction holds what this one needs (serialization failure,
# deadlock, lock not available): repeat soon, like a locked SQLite file
_PG_CONTENTION = frozenset({"40001", "40P01", "55P03"})
# the database went away, is starting or shutting down, or has no connection left: wait for it
# like for a server that is away (class 08 is "connection exception")
_PG_AWAY = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLAlchemy's code for "the connection pool ran dry" (https://sqlalche.me/e/20/3o7r): a tracking
# server out of database connections answers it as HTTP 400, a load problem rather than a refusal
_POOL_TIMEOUT = re.compile(r"sqlalche\.me/e/\d+/3o7r|QueuePool limit")

Failure = Literal["contention", "away"]


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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it: ``__cause__`` and ``__context__`` (MLflow wraps the
    requests and database errors in its own, sometimes without ``from``), SQLAlchemy's ``orig``
    (the driver's error) and urllib3's ``reason``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        for nxt in (item.__cause__, item.__context__, getattr(item, "orig", None), getattr(item, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _database_failure(exc: BaseException) -> tuple[bool, Failure | None]:
    """Whether ``exc`` is a database error, and if so whether it is worth repeating."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
        if code is None:  # older Pythons: SQLite's fixed text for these two codes (sqlite3_errstr)
            return True, "contention" if str(exc) in ("database is locked", "database table is locked") else None
        return True, "contention" if code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED) else None
    from mlflow.exceptions import MlflowException

    # psycopg2 names it pgcode, psycopg 3 sqlstate (MlflowException's sqlstate is its own classification)
    state = getattr(exc, "pgcode", None) or (
        None if isinstance(exc, MlflowException) else getattr(exc, "sqlstate", None)
    )
    if isinstance(state, str) and len(state) == 5:
        if state in _PG_CONTENTION:
            return True, "contention"
        return True, "away" if state.startswith("08") or state in _PG_AWAY else None
    try:
        import sqlalchemy.exc
    except ImportError:
        return False, None
    # a local SQLite file cannot go away: a pool timeout or a dropped connection there is a
    # process interrupted mid-call (SIGTERM), and waiting CVCL_TRACKING_WAIT_S for it only delays its exit
    local = sqlite_path(tracking_uri()) is not None
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # every pooled connection busy
        return True, None if local else "away"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated and not local:  # SQLAlchemy's dialect saw the connection drop
            return True, "away"
        # the driver's error decides; one without a code we know (a bad query, a refused login) is final
        return True, _database_failure(exc.orig)[1] if isinstance(exc.orig, BaseException) else None
    return False, None


def _network_failure(exc: BaseException) -> tuple[bool, Failure | None]:
    """Whether ``exc`` is a failure to talk to the server, and if so whether it is worth repeating."""
    import errno

    import requests
    import urllib3.exceptions

    if isinstance(exc, (requests.exceptions.SSLError, urllib3.exceptions.SSLError)):
        return True, None  # a certificate or TLS setting that is wrong now is wrong in a minute too
    if isinstance(
        exc,
        (
            requests.ConnectionError,  # refused, reset, unreachable; and timeouts after MLflow's retries
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,  # the connection broke mid-answer
            # MLflow's client repeated a transient status (its list is TRANSIENT_STATUS) until it ran out
            requests.exceptions.RetryError,
            urllib3.exceptions.ResponseError,
            urllib3.exceptions.TimeoutError,
            urllib3.exceptions.ProtocolError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return True, "away"
    if isinstance(exc, OSError) and exc.errno in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
    ):
        return True, "away"
    return False, None


def _failure(exc: BaseException) -> Failure | None:
    """What kind of failure ``exc`` is, read from its classes, codes and HTTP status rather than
    from the wording of MLflow's messages (which changes between releases): ``"contention"`` (a
    locked SQLite file, a PostgreSQL lock or serialization conflict: repeat soon), ``"away"`` (no
    connection, a timeout, HTTP 429 or 5xx, a database restarting: wait, bounded) or None (a
    refusal: repeating cannot help). Text is read only where no code exists: SQLAlchemy's pool
    timeout inside a server's HTTP 400, and SQLite's fixed lock messages on Pythons before 3.11."""
    from mlflow.exceptions import MlflowException, RestException

    chain = list(_chain(exc))
    for item in chain:  # the root cause decides over MLflow's labels (it calls any OperationalError unavailable)
        known, kind = _database_failure(item)
        if known:
            return kind
    for item in chain:
        known, kind = _network_failure(item)
        if known:
            return kind
    for item in chain:
        if isinstance(item, RestException):  # the server's own answer
            code = str(item.error_code)
            if code in _AWAY_REST_CODES:
                return "away"
            if code in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE") and _POOL_TIMEOUT.search(item.message):
                return "away"
            return None
        if isinstance(item, MlflowException) and str(item.error_code) in _AWAY_LOCAL_CODES:
            return "away"  # e.g. a 503/504/429 whose body was not MLflow's JSON
    return None


def _locked(exc: Exception) -> bool:
    """Whether the database is busy with another writer (SQLite's lock, a PostgreSQL conflict)."""
    return _failure(exc) == "contention"


def transient(exc: Exception) -> bool:
    """Whether ``exc`` says the tracking server is away for now (no connection, a timeout, or a
    transient HTTP status such as the 503 of a server whose database is down), rather than
    refusing the request."""
    return _failure(exc) == "away"


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


def _request_auth() -> dict[str, Any]:
    """``requests`` arguments for the login and TLS settings MLflow's client reads: the same
    environment variables (MLflow's public ``mlflow.environment_variables``) and the same
    ``~/.mlflow/credentials`` file, so this check sees what the stage's MLflow calls will see."""
    import configparser

    from mlflow import environment_variables as env

    user, password = env.MLFLOW_TRACKING_USERNAME.get(), env.MLFLOW_TRACKING_PASSWORD.get()
    path = Path("~/.mlflow/credentials").expanduser()
    if (not user or not password) and path.is_file():
        config = configparser.ConfigParser()
        config.read(path)
        if config.has_section("mlflow"):
            user = user or config["mlflow"].get("mlflow_tracking_username")
            password = password or config["mlflow"].get("mlflow_tracking_password")
    out: dict[str, Any] = {}
    token = env.MLFLOW_TRACKING_TOKEN.get()
    if user and password:
        out["auth"] = (user, password)
    elif token:
        out["headers"] = {"Authorization": f"Bearer {token}"}
    server_cert = env.MLFLOW_TRACKING_SERVER_CERT_PATH.get()
    if env.MLFLOW_TRACKING_INSECURE_TLS.get():
        if server_cert:
            raise CvclError("MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH are both set; unset one")
        out["verify"] = False
    elif server_cert:
        out["verify"] = server_cert
    client_cert = env.MLFLOW_TRACKING_CLIENT_CERT_PATH.get()
    if client_cert:
        out["cert"] = client_cert
    return out


def _unreachable(exc: BaseException, timeout_s: float) -> str:
    """Why a request got no answer, in a few words: the OS's error, or the timeout."""
    import urllib3.exceptions

    chain = list(_chain(exc))
    for item in chain:
        if isinstance(item, OSError) and item.errno is not None and item.strerror:
            return f"[Errno {item.errno}] {item.strerror}"
    text = " ".join(str(exc).split())
    if errno_text := _errno(text):  # the errno only survives in urllib3's message
        return errno_text
    if any(isinstance(item, (TimeoutError, urllib3.exceptions.TimeoutError)) for item in chain):
        return f"no answer within {timeout_s:.0f} s"
    return text[:150]


def check_server(uri: str, timeout_s: float = 60.0) -> None:
    """Fail fast, in one line, when the tracking server at ``uri`` is down or refuses this login.

    Without it, a stage would learn this at its first MLflow call, after MLflow's own retries
    (minutes), as a traceback. Stores that are not an HTTP server (SQLite, a database URI) are
    left to MLflow.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    session = requests.Session()
    # a server restarting gets a few seconds, as MLflow's own client would give it; then its last
    # answer (a 503, say) is read below rather than raised
    retry = Retry(
        total=2, backoff_factor=1, status_forcelist=TRANSIENT_STATUS, allowed_methods=None, raise_on_status=False
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    try:
        response = session.get(
            uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            timeout=timeout_s,
            **_request_auth(),
        )
    except requests.RequestException as exc:
        raise TrackingServerError(
            uri,
            f"cannot be reached ({_unreachable(exc, timeout_s)}); start it (make server) or fix MLFLOW_TRACKING_URI",
        ) from None
    finally:
        session.close()
    if response.status_code in TRANSIENT_STATUS:
        raise TrackingServerError(
            uri,
            f"cannot be reached (HTTP {response.status_code}, three tries); start it (make server) "
            "or fix MLFLOW_TRACKING_URI",
        )
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
