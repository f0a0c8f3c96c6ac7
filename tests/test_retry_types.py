"""Which tracking failures ``with_retries`` waits out: decided on exception classes, HTTP status
and database error codes, never on the wording of MLflow's messages.

The HTTP cases put a real ``MlflowClient`` (MLflow's own retries off, a 1 s request timeout)
in front of a small scripted server on 127.0.0.1 and count the requests it gets.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import sqlalchemy.exc
import urllib3.exceptions
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import BAD_REQUEST, TEMPORARILY_UNAVAILABLE

from cvcl.tracking import store
from cvcl.tracking.store import TrackingServerError, check_server, transient, with_retries

ENDPOINT = "/api/2.0/mlflow/experiments/get-by-name"
EXPERIMENT = {
    "experiment": {
        "experiment_id": "7",
        "name": "retry-check",
        "artifact_location": "mlflow-artifacts:/7",
        "lifecycle_stage": "active",
    }
}
SERVER_LIFETIME_S = 120.0  # the server stops by itself even if a test forgets it
SLOW_S = 4.0  # longer than the client's MLFLOW_HTTP_REQUEST_TIMEOUT


@dataclass
class Script:
    """What the server answers to the n-th request for ENDPOINT; 200 with EXPERIMENT after the list."""

    answers: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    @property
    def hits(self) -> int:
        return sum(p.startswith(ENDPOINT) for p in self.paths)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
            pass

        def _send(self, status: int, body: str, content_type: str = "application/json") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            script.paths.append(self.path)
            if self.path.startswith("/api/2.0/mlflow/experiments/search"):  # check_server's probe
                self._send(200, json.dumps({"experiments": []}))
                return
            if not self.path.startswith(ENDPOINT):
                self._send(404, json.dumps({"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}))
                return
            n = script.hits - 1
            answer = script.answers[n] if n < len(script.answers) else "ok"
            try:
                if answer == "slow":  # nothing at all until long after the client's timeout
                    script.released.wait(SLOW_S)
                    self._send(200, json.dumps(EXPERIMENT))
                elif answer == "slow body":  # headers at once, then the body stalls
                    data = json.dumps(EXPERIMENT).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.flush()
                    script.released.wait(SLOW_S)
                    self.wfile.write(data)
                elif answer == "503":
                    self._send(503, json.dumps({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "db down"}))
                elif answer == "503 html":
                    self._send(503, "<html>Service Unavailable</html>", "text/html")
                elif answer == "pool 400":
                    message = (
                        "(sqlalchemy.exc.TimeoutError) QueuePool limit of size 5 overflow 10 reached, connection "
                        "timed out, timeout 30.00 (Background on this error at: https://sqlalche.me/e/20/3o7r)"
                    )
                    self._send(400, json.dumps({"error_code": "BAD_REQUEST", "message": message}))
                elif answer == "400 timed out":
                    message = "the parameter 'timed out' is not valid: the request timed out"
                    self._send(400, json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message}))
                elif answer == "404 html":
                    self._send(404, "<html>Not Found</html>", "text/html")
                else:
                    self._send(200, json.dumps(EXPERIMENT))
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on a slow answer
                pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stopper = threading.Timer(SERVER_LIFETIME_S, httpd.shutdown)
    stopper.daemon = True
    stopper.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        script.released.set()
        stopper.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch, server: tuple[str, Script]) -> list[float]:
    """MLflow's own retries off and a 1 s timeout, so every failure reaches ``with_retries``; its
    pauses are recorded instead of slept (the server waits on an Event, not time.sleep)."""
    pauses: list[float] = []
    _quick_client(monkeypatch, server[0], pauses.append)
    return pauses


def _quick_client(monkeypatch: pytest.MonkeyPatch, uri: str, sleep: Callable[[float], None]) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CVCL_TRACKING_WAIT_S", "600")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(store.time, "sleep", sleep)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.mark.parametrize(
    "failures",
    [["slow", "slow"], ["slow body", "slow body"], ["503", "503"], ["503 html", "slow"], ["pool 400"]],
)
def test_a_slow_or_unavailable_server_is_waited_for_until_it_answers(server, client_env, capsys, failures):
    uri, script = server
    script.answers = failures
    client = _client(uri)
    experiment = with_retries(lambda: client.get_experiment_by_name("retry-check"))
    assert experiment is not None and experiment.experiment_id == "7"
    assert script.hits == len(failures) + 1
    assert len(client_env) == len(failures)  # one pause per failure, no more
    err = capsys.readouterr().err
    assert err.count("is away") == 1 and err.count("answers again") == 1, err


def test_a_connect_timeout_in_mlflows_timeout_wording_is_waited_for(monkeypatch, capsys):
    """MLflow words a connect timeout "failed with timeout exception" (not "failed with
    exception"): a server whose accept queue is full first, then serves."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue: further connects get no answer
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(script), bind_and_activate=False)
    httpd.daemon_threads = True
    httpd.socket.close()
    httpd.socket = listener
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:  # the server starts accepting after two timed-out tries
            for filler in fillers:
                filler.close()
            thread.start()

    uri = f"http://127.0.0.1:{port}"
    _quick_client(monkeypatch, uri, pause)
    client = _client(uri)
    try:
        experiment = with_retries(lambda: client.get_experiment_by_name("retry-check"))
    finally:
        for filler in fillers:
            filler.close()
        if thread.is_alive():
            httpd.shutdown()
        httpd.server_close()
    assert experiment is not None and experiment.experiment_id == "7"
    # waited through the two refused tries at least (a loaded machine may time out once more
    # while the server thread starts: the count, not the clock, is what the test holds)
    assert len(pauses) >= 2 and script.hits >= 1
    assert "is away" in capsys.readouterr().err


@pytest.mark.parametrize("answer", ["400 timed out", "404 html"])
def test_a_refusal_is_not_retried(server, client_env, capsys, answer):
    uri, script = server
    script.answers = [answer]
    client = _client(uri)
    with pytest.raises(MlflowException):
        with_retries(lambda: client.get_experiment_by_name("retry-check"))
    assert script.hits == 1
    assert client_env == []
    assert "is away" not in capsys.readouterr().err


def test_a_server_away_past_the_bound_fails_in_one_line(server, client_env, monkeypatch):
    uri, script = server
    script.answers = ["503"] * 50
    monkeypatch.setenv("CVCL_TRACKING_WAIT_S", "0")
    client = _client(uri)
    with pytest.raises(TrackingServerError) as caught:
        with_retries(lambda: client.get_experiment_by_name("retry-check"))
    assert script.hits == 1
    assert "away for 0 s" in str(caught.value) and "\n" not in str(caught.value)


# the classifier on constructed exceptions


def _sqlite_error(code: int, message: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    exc.sqlite_errorname = "SQLITE_BUSY" if code & 0xFF == 5 else "OTHER"  # type: ignore[attr-defined]
    return exc


def _wrapped_by_mlflow(driver_error: BaseException) -> MlflowException:
    """As MLflow's SQLAlchemy store raises it: MlflowException(TEMPORARILY_UNAVAILABLE) from
    SQLAlchemy's OperationalError, whose ``orig`` is the driver's error."""
    sa_error = sqlalchemy.exc.OperationalError("INSERT INTO metrics ...", {}, driver_error)  # type: ignore[arg-type]
    sa_error.__cause__ = driver_error
    try:
        try:
            raise sa_error
        except sqlalchemy.exc.OperationalError as e:
            raise MlflowException(str(e), error_code=TEMPORARILY_UNAVAILABLE) from e
    except MlflowException as outer:
        return outer


class FakePgError(Exception):
    """A psycopg2-style error: the SQLSTATE in ``pgcode``."""

    def __init__(self, pgcode: str, message: str = "something unusual") -> None:
        super().__init__(message)
        self.pgcode = pgcode


class FakePsycopg3Error(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("psycopg says no")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # SQLite busy/locked by code, whatever the text says
        (_sqlite_error(5, "the kettle is on"), "contention"),
        (_sqlite_error(517, "snapshot busy, in words never seen before"), "contention"),  # SQLITE_BUSY_SNAPSHOT
        (_sqlite_error(6, "x"), "contention"),
        (_wrapped_by_mlflow(_sqlite_error(5, "opaque")), "contention"),
        # MLflow labels every OperationalError unavailable; SQLite's code says this one is final
        (_wrapped_by_mlflow(_sqlite_error(1, "no such table: metrics (database is locked?)")), None),
        # PostgreSQL by SQLSTATE
        (FakePgError("40001"), "contention"),
        (FakePgError("40P01"), "contention"),
        (_wrapped_by_mlflow(FakePgError("55P03")), "contention"),
        (_wrapped_by_mlflow(FakePgError("57P01")), "away"),
        (_wrapped_by_mlflow(FakePgError("08006")), "away"),
        (_wrapped_by_mlflow(FakePsycopg3Error("57P03")), "away"),
        (_wrapped_by_mlflow(FakePgError("23505", "database is locked, timed out, busy")), None),  # unique violation
        (_wrapped_by_mlflow(FakePsycopg3Error(None)), None),
        # HTTP: the status decides, not the words
        (RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "request timed out; busy"}), None),
        (
            RestException(
                {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "API request to x failed with exception"}
            ),
            None,
        ),
        (RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "fine"}), "away"),
        (RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}), "away"),
        (RestException({"error_code": "503", "message": "from a proxy"}), "away"),
        (
            RestException({"error_code": "BAD_REQUEST", "message": "QueuePool limit of size 5 overflow 10 reached"}),
            "away",
        ),
        (MlflowException("a local mistake that happens to say timed out"), None),  # INTERNAL_ERROR by default
        (MlflowException("wrapped", error_code=BAD_REQUEST), None),
        # connection errors and timeouts, directly or behind MLflow's wrapper
        (requests.ConnectionError("refused"), "away"),
        (requests.ReadTimeout("read"), "away"),
        (requests.exceptions.RetryError("too many 503 error responses"), "away"),
        (requests.exceptions.SSLError("certificate verify failed"), None),
        (urllib3.exceptions.ProtocolError("Connection aborted."), "away"),
        (ConnectionResetError(104, "Connection reset by peer"), "away"),
        (OSError(113, "No route to host"), "away"),
        (FileNotFoundError(2, "No such file"), None),
    ],
    ids=repr,
)
def test_the_classifier_reads_types_and_codes(exc, expected):
    assert store._failure(exc) == expected


def test_mlflow_wrappers_are_seen_through_cause_and_context():
    def wrapped(inner: BaseException, chained: bool) -> MlflowException:
        try:
            try:
                raise inner
            except Exception as e:
                if chained:
                    raise MlflowException("API request to /x failed with timeout exception") from e
                raise MlflowException("a new wording nobody has seen yet") from None  # __context__ only
        except MlflowException as outer:
            return outer

    assert transient(wrapped(requests.ReadTimeout("read timed out"), chained=True))
    assert transient(wrapped(requests.ConnectionError("refused"), chained=False))
    assert not transient(wrapped(ValueError("a bad argument"), chained=True))


def test_a_locked_sqlite_store_is_retried_briefly_then_raised(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(store.time, "sleep", pauses.append)
    calls = 0

    def locked_twice() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise _wrapped_by_mlflow(_sqlite_error(5, "unfamiliar words"))
        return "done"

    assert with_retries(locked_twice) == "done" and calls == 3 and len(pauses) == 2

    def always_locked() -> str:
        raise _wrapped_by_mlflow(_sqlite_error(6, "unfamiliar words"))

    with pytest.raises(MlflowException):
        with_retries(always_locked, attempts=3)


# check_server: plain requests, the same one-line messages


def test_check_server_accepts_a_server_that_answers(server, client_env):
    uri, script = server
    check_server(uri, timeout_s=5)
    assert script.paths and script.paths[0].startswith("/api/2.0/mlflow/experiments/search")


def test_check_server_names_a_refused_connection_in_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(TrackingServerError) as caught:
        check_server(uri, timeout_s=5)
    message = str(caught.value)
    assert message.startswith(f"MLflow tracking server {uri}: cannot be reached ([Errno 111] Connection refused)")
    assert "\n" not in message
    assert time.monotonic() - started < 60  # bounded: a few tries, not MLflow's minutes


def test_check_server_sends_the_login_mlflow_would_send(monkeypatch):
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{httpd.server_address[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-her-password")
        with pytest.raises(TrackingServerError) as caught:
            check_server(uri, timeout_s=5)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
    assert "MLFLOW_TRACKING_USERNAME/PASSWORD (user 'alice') were refused (HTTP 401)" in str(caught.value)
    assert seen and seen[0].get("Authorization", "").startswith("Basic ")


@pytest.mark.parametrize("uri, expected", [("sqlite:////tmp/x/mlflow.db", None), ("postgresql://db/mlflow", "away")])
def test_a_pool_timeout_is_away_only_for_a_database_server(monkeypatch, uri, expected):
    """A local SQLite file cannot go away: there a pool timeout is a call cut short (SIGTERM), and
    waiting for it would only hold the stopping stage (tests/test_no_orphans.py)."""
    import sqlalchemy.exc

    from cvcl.tracking import store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert store._failure(sqlalchemy.exc.TimeoutError("QueuePool limit reached")) == expected
