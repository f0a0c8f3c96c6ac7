"""The team tracking server against intruders and bad input, for real: anonymous and wrong logins,
a read-only teammate, the password files and log, plain HTTP beyond loopback, artifact paths that
try to leave the artifact root, and values PostgreSQL or MLflow would refuse or alter.

One team server for the module (tests/team_server.py), started with ``--default-permission READ``:
under the default EDIT a READ grant restricts nothing (MLflow takes the default permission as a
floor), so that is how a lab keeps a teammate read-only. The tests that need no server (the
warnings and the password file at start) fake the processes and take well under a second.
Whether the pipeline's own records keep a password is checked in tests/test_team_server.py, on the
run its fixture logs there.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import secrets
import stat
from pathlib import Path

import pytest
import requests

from cvcl.commands import server as server_command
from cvcl.tracking import server as team_server
from tests.team_server import ADMIN_PASSWORD, PASSWORD, USER, running_team_server

pytestmark = pytest.mark.slow

BOB, BOB_PASSWORD = "bob", secrets.token_urlsafe(16)
SERVER_ARGS = ["--default-permission", "READ"]
TIMEOUT = 20  # seconds, for each request
ADMIN, ALICE = ("admin", ADMIN_PASSWORD), (USER, PASSWORD)
NOTE_TEXT = "alice's artifact " + secrets.token_hex(8)
SECRETS = (ADMIN_PASSWORD, PASSWORD, BOB_PASSWORD)


@pytest.fixture(scope="module")
def server():
    with running_team_server(*SERVER_ARGS) as team:
        team.add_user(BOB, BOB_PASSWORD)
        yield team


def _api(team, endpoint: str, auth, body: dict | None = None, version: str = "2.0", **params) -> requests.Response:
    url = f"{team.uri}/api/{version}/mlflow/{endpoint}"
    if body is None:
        return requests.get(url, params=params, auth=auth, timeout=TIMEOUT)
    return requests.post(url, json=body, auth=auth, timeout=TIMEOUT)


def _ok(response: requests.Response) -> dict:
    assert response.status_code == 200, (response.request.url, response.status_code, response.text[:300])
    return response.json()


def _artifact_url(team, experiment_id: str, run_id: str, path: str) -> str:
    return f"{team.uri}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{path}"


@pytest.fixture(scope="module")
def alices_run(server) -> dict:
    """An experiment alice made (she holds MANAGE on it) with one run, a metric and an artifact."""
    experiment_id = _ok(_api(server, "experiments/create", ALICE, {"name": "alice-private"}))["experiment_id"]
    run_id = _ok(_api(server, "runs/create", ALICE, {"experiment_id": experiment_id}))["run"]["info"]["run_id"]
    _ok(_api(server, "runs/log-metric", ALICE, {"run_id": run_id, "key": "dice", "value": 0.5, "timestamp": 0}))
    put = requests.put(
        _artifact_url(server, experiment_id, run_id, "note.txt"), data=NOTE_TEXT.encode(), auth=ALICE, timeout=TIMEOUT
    )
    assert put.status_code == 200, put.text
    return {"experiment_id": experiment_id, "run_id": run_id}


def _intruder_requests(team, run: dict) -> list[tuple[str, str, dict]]:
    """(method, url, requests' keyword arguments): the REST API, the UI's, the UI page, artifacts."""
    e, r = run["experiment_id"], run["run_id"]
    api = f"{team.uri}/api/2.0/mlflow"
    batch = {"run_id": r, "metrics": [{"key": "dice", "value": 0.0, "timestamp": 0, "step": 0}]}
    return [
        ("GET", f"{api}/experiments/search", {"params": {"max_results": 10}}),
        ("POST", f"{api}/experiments/search", {"json": {"max_results": 10}}),
        ("POST", f"{api}/experiments/create", {"json": {"name": "intruder"}}),
        ("POST", f"{api}/runs/create", {"json": {"experiment_id": e}}),
        ("POST", f"{api}/runs/log-batch", {"json": batch}),
        ("GET", f"{api}/runs/get", {"params": {"run_id": r}}),
        ("POST", f"{api}/runs/search", {"json": {"experiment_ids": [e]}}),
        ("POST", f"{api}/users/create", {"json": {"username": "eve", "password": "eve-password-1"}}),
        ("GET", f"{team.uri}/ajax-api/2.0/mlflow/experiments/search", {"params": {"max_results": 10}}),
        (
            "POST",
            f"{team.uri}/graphql",
            {"json": {"query": 'query { mlflowGetRun(input: {runId: "' + r + '"}) { run { info { runId } } } }'}},
        ),
        ("GET", f"{team.uri}/", {}),
        ("GET", f"{team.uri}/get-artifact", {"params": {"run_uuid": r, "path": "note.txt"}}),
        ("GET", _artifact_url(team, e, r, "note.txt"), {}),
        ("PUT", _artifact_url(team, e, r, "intruder.txt"), {"data": b"intruder"}),
    ]


def test_anonymous_requests_and_wrong_logins_are_refused_with_401(server, alices_run):
    listed = _intruder_requests(server, alices_run)
    logins = [None] * len(listed) + [(USER, "not-" + PASSWORD)] * len(listed) + [("eve", PASSWORD)] * 4
    tried = 0
    with requests.Session() as session:
        for (method, url, kwargs), auth in zip(listed * 3, logins, strict=False):
            response = session.request(method, url, auth=auth, timeout=TIMEOUT, **kwargs)
            assert response.status_code == 401, (method, url, auth and auth[0], response.status_code)
            assert NOTE_TEXT not in response.text
            tried += 1
    assert tried == 2 * len(listed) + 4 == 32
    # nothing came of them: alice still sees her run as she left it, and no intruder's work
    run = _ok(_api(server, "runs/get", ALICE, run_id=alices_run["run_id"]))["run"]
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"dice": 0.5}
    assert _api(server, "experiments/get-by-name", ALICE, experiment_name="intruder").status_code == 404
    assert _api(server, "users/get", ADMIN, username="eve").status_code == 404
    assert not list((server.state / "artifacts").rglob("intruder.txt"))
    # the page a browser opens asks for the login
    assert requests.get(f"{server.uri}/", timeout=TIMEOUT).headers.get("WWW-Authenticate", "").startswith("Basic")


def _permission(team, user: str, experiment_id: str) -> str:
    """``user``'s effective permission on the experiment, as the admin asks the server."""
    return _ok(
        _api(
            team,
            "users/permissions/get",
            ADMIN,
            version="3.0",
            username=user,
            resource_type="experiment",
            resource_id=experiment_id,
        )
    )["permission"]


def _grant(team, user: str, experiment_id: str, permission: str) -> None:
    """Alice, who made the experiment (MANAGE), grants ``user`` ``permission`` on it."""
    _ok(
        _api(
            team,
            "users/permissions/grant",
            ALICE,
            {"username": user, "resource_type": "experiment", "resource_id": experiment_id, "permission": permission},
            version="3.0",
        )
    )


def test_a_teammate_granted_read_cannot_log_create_rename_or_delete(server, alices_run):
    e, r = alices_run["experiment_id"], alices_run["run_id"]
    _grant(server, BOB, e, "READ")
    assert _permission(server, BOB, e) == "READ"
    bob = (BOB, BOB_PASSWORD)
    assert _api(server, "runs/get", bob, run_id=r).status_code == 200  # he may read it
    batch = {
        "run_id": r,
        "metrics": [{"key": "dice", "value": 0.0, "timestamp": 1, "step": 1}],
        "params": [{"key": "by", "value": "bob"}],
        "tags": [{"key": "by", "value": "bob"}],
    }
    writes = [
        ("runs/create", {"experiment_id": e}),
        ("runs/log-batch", batch),
        ("runs/log-metric", {"run_id": r, "key": "dice", "value": 0.0, "timestamp": 1}),
        ("runs/set-tag", {"run_id": r, "key": "by", "value": "bob"}),
        ("runs/update", {"run_id": r, "status": "FAILED"}),
        ("runs/delete", {"run_id": r}),
        ("experiments/update", {"experiment_id": e, "new_name": "bobs-now"}),
        ("experiments/delete", {"experiment_id": e}),
    ]
    codes = {endpoint: _api(server, endpoint, bob, body).status_code for endpoint, body in writes}
    codes["users/permissions/grant (himself EDIT)"] = _api(
        server,
        "users/permissions/grant",
        bob,
        {"username": BOB, "resource_type": "experiment", "resource_id": e, "permission": "EDIT"},
        version="3.0",
    ).status_code
    codes["artifact upload"] = requests.put(
        _artifact_url(server, e, r, "bob.txt"), data=b"bob", auth=bob, timeout=TIMEOUT
    ).status_code
    codes["artifact delete"] = requests.delete(
        _artifact_url(server, e, r, "note.txt"), auth=bob, timeout=TIMEOUT
    ).status_code
    assert codes == dict.fromkeys(codes, 403), codes
    assert len(codes) == 11
    # all as alice left it, bob still READ
    run = _ok(_api(server, "runs/get", ALICE, run_id=r))["run"]
    assert run["info"]["lifecycle_stage"] == "active" and run["info"]["status"] == "RUNNING"
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"dice": 0.5}
    assert not run["data"].get("params") and "by" not in {t["key"] for t in run["data"].get("tags", [])}
    experiment = _ok(_api(server, "experiments/get", ALICE, experiment_id=e))["experiment"]
    assert experiment["name"] == "alice-private" and experiment["lifecycle_stage"] == "active"
    assert not list((server.state / "artifacts").rglob("bob.txt"))
    assert list((server.state / "artifacts").rglob("note.txt"))
    # the control: the same log-batch goes through for alice (MANAGE): bob's were refused for want of it
    _ok(_api(server, "runs/log-batch", ALICE, batch))


def _raw(team, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """A request sent as written: ``requests`` would resolve ``..`` in the path before sending."""
    host, port = team.uri.removeprefix("http://").split(":")
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers={"Authorization": f"Basic {token}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_artifact_paths_with_dots_or_absolute_are_refused_and_nothing_lands_outside_the_root(server, alices_run):
    e, r = alices_run["experiment_id"], alices_run["run_id"]
    root = (server.state / "artifacts").resolve()
    run_root = root / e / r / "artifacts"
    token = secrets.token_hex(6)
    canary = server.state / f"canary-{token}.txt"  # beside the artifact root, as the state's secrets are
    canary.write_text(f"CANARY {token}")
    prefix = f"/api/2.0/mlflow-artifacts/artifacts/{e}/{r}/artifacts/"
    outside = f"{server.state}/canary-{token}.txt"
    downloads = (
        [
            prefix + p
            for p in (
                f"../../../../canary-{token}.txt",
                f"%2e%2e/%2e%2e/%2e%2e/%2e%2e/canary-{token}.txt",
                f"..%2f..%2f..%2f..%2fcanary-{token}.txt",
                f"%252e%252e/%252e%252e/%252e%252e/%252e%252e/canary-{token}.txt",
            )
        ]
        + [
            f"/api/2.0/mlflow-artifacts/artifacts/../canary-{token}.txt",
            f"/api/2.0/mlflow-artifacts/artifacts/%2e%2e/canary-{token}.txt",
            f"/api/2.0/mlflow-artifacts/artifacts/{outside}",
            f"/api/2.0/mlflow-artifacts/artifacts/%2F{outside.lstrip('/').replace('/', '%2F')}",
            "/api/2.0/mlflow-artifacts/artifacts?path=..%2F..",
            f"/api/2.0/mlflow-artifacts/artifacts?path={outside}",
        ]
        + [
            f"/get-artifact?run_uuid={r}&path={p}"
            for p in (f"..%2F..%2F..%2F..%2Fcanary-{token}.txt", outside, "/etc/passwd")
        ]
        + [
            f"/api/2.0/mlflow/artifacts/list?run_id={r}&path=..%2F..%2F..",
            f"/api/2.0/mlflow/artifacts/list?run_id={r}&path={server.state}",
        ]
    )
    uploads = {  # the path sent -> where it would land if followed
        prefix + f"../../../../up-{token}-1.txt": run_root / f"../../../../up-{token}-1.txt",
        prefix + f"%2e%2e/%2e%2e/%2e%2e/%2e%2e/up-{token}-2.txt": run_root / f"../../../../up-{token}-2.txt",
        prefix + f"..%2f..%2f..%2f..%2fup-{token}-3.txt": run_root / f"../../../../up-{token}-3.txt",
        f"/api/2.0/mlflow-artifacts/artifacts/../up-{token}-4.txt": root / f"../up-{token}-4.txt",
        f"/api/2.0/mlflow-artifacts/artifacts/%2e%2e/up-{token}-5.txt": root / f"../up-{token}-5.txt",
        f"/api/2.0/mlflow-artifacts/artifacts//tmp/up-{token}-6.txt": Path(f"/tmp/up-{token}-6.txt"),
        f"/api/2.0/mlflow-artifacts/artifacts/%2Ftmp%2Fup-{token}-7.txt": Path(f"/tmp/up-{token}-7.txt"),
    }
    answers = [(path, *_raw(server, "GET", path)) for path in downloads]
    answers += [(path, *_raw(server, "PUT", path, b"PWNED")) for path in uploads]
    for path, status, body in answers:
        assert 400 <= status < 500, (path, status, body[:200])
        assert b"CANARY" not in body
    for target in uploads.values():
        assert not target.resolve().exists(), target
    # nothing with the token anywhere in the server's state but the canary
    assert [p for p in server.state.rglob(f"*{token}*")] == [canary]
    # the control: the same upload and download with a plain name go through, inside the run's folder
    assert _raw(server, "PUT", prefix + f"plain-{token}.txt", b"fine")[0] == 200
    assert _raw(server, "GET", prefix + f"plain-{token}.txt") == (200, b"fine")
    assert (run_root / f"plain-{token}.txt").read_bytes() == b"fine"
    # a backslash is a plain character of a Linux file name: such a file stays inside the run's folder
    status, _ = _raw(server, "PUT", prefix + f"..\\..\\..\\..\\bs-{token}.txt", b"x")
    assert status == 200 and [p.parent for p in server.state.rglob(f"*bs-{token}*")] == [run_root]
    assert len(answers) == len(downloads) + len(uploads) == 22


def test_bad_values_get_one_note_each_and_the_run_stays_readable(server, monkeypatch, capsys):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from mlflow.tracking._tracking_service import utils

    from cvcl import analysis
    from cvcl.tracking.run import start_run

    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CVCL_EXPERIMENT", raising=False)
    # load_runs sets MLflow's global URI: put it back afterwards for the other tests
    monkeypatch.setattr(utils, "_tracking_uri", getattr(utils, "_tracking_uri", None))
    undecodable = b"run \xff\xfe".decode("utf-8", "surrogateescape")  # bytes that are not UTF-8
    params = {
        "method": "cvcl",
        "labeled": 2,
        "seed": 1,
        "loss.mt_weight": 1.0,
        "loss.pcl_weight": 1.0,
        "loss.vcl_weight": 1.0,
        "notes": "n" * 10_000,
        "cmd": "a\x00b",
    }
    run = start_run("security", "bad-values", params, {"source": undecodable, "lone": "x\ud800y", "long": "t" * 9000})
    run.log_metrics({"loss": math.nan, "dice": 0.5}, step=0)
    run.log_metrics({"loss": math.nan}, step=1)  # said once
    run.log_metrics(
        {"loss": 0.25, "dice": 0.8, "jaccard": math.nan, "hd95": math.inf, "asd": -math.inf, "lr": "n/a"}, step=2
    )
    run.flush()
    run.set_status("FINISHED")  # the run kept going

    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    expected = {
        "param notes: 10000 characters, kept the first 6000": 1,
        "param cmd: not valid UTF-8": 1,
        "tag source: not valid UTF-8": 1,
        "tag lone: not valid UTF-8": 1,
        "tag long: 9000 characters, kept the first 8000": 1,
        "metric loss: NaN at step 0": 1,
        "metric jaccard: NaN at step 2": 1,
        "metric hd95: inf at step 2 not logged": 1,
        "metric asd: -inf at step 2 not logged": 1,
        "metric lr: 'n/a' at step 2 is not a number": 1,
    }
    assert {k: sum(line.startswith(f"note: {k}") for line in notes) for k in expected} == expected
    assert len(notes) == len(expected) == 10, notes
    assert all("\n" not in n and len(n) < 400 for n in notes)

    client = MlflowClient(server.uri)
    stored = client.get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params["notes"] == "n" * 6000 and stored.data.params["cmd"] == "a\\x00b"
    assert stored.data.tags["source"] == "run \\xff\\xfe" and stored.data.tags["lone"] == "x\\ud800y"
    assert stored.data.tags["long"] == "t" * 8000
    assert math.isnan(stored.data.metrics["jaccard"]) and stored.data.metrics["dice"] == 0.8
    assert "hd95" not in stored.data.metrics and "asd" not in stored.data.metrics and "lr" not in stored.data.metrics
    loss = {m.step: m.value for m in client.get_metric_history(run.run_id, "loss")}
    assert math.isnan(loss[0]) and math.isnan(loss[1]) and loss[2] == 0.25
    experiment = stored.info.experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [run.run_id]
    response = _api(server, "runs/get", ALICE, run_id=run.run_id)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    json.loads(response.text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))  # NaN as "NaN"

    # what another client's infinite value becomes: MLflow keeps a finite 1.8e308 for it
    other = client.create_run(experiment).info.run_id
    client.log_batch(
        other,
        metrics=[
            Metric(k, v, 0, 0) for k, v in {"dice": 0.7, "jaccard": math.nan, "hd95": math.inf, "asd": 1.0}.items()
        ],
        params=[Param(k, str(v)) for k, v in params.items() if k not in ("notes", "cmd")],
    )
    client.set_terminated(other)
    table = analysis.load_runs("cvcl-security", server.uri)  # the notebooks' loader reads both
    assert sorted(table["dice"]) == [0.7, 0.8]
    ours = table.set_index("run_id").loc[run.run_id]
    assert math.isnan(ours["jaccard"]) and math.isnan(ours["hd95"]) and math.isnan(ours["asd"])
    assert table.set_index("run_id").loc[other, "hd95"] == pytest.approx(1.7976931348623157e308)
    assert mlflow.get_tracking_uri() == server.uri


def _fake_serve(tmp_path: Path, monkeypatch, *argv: str) -> tuple[list[str], dict[str, str]]:
    """``serve`` as ``cvcl server <argv>`` runs it, with an external database
    and no ``mlflow server`` started: the command and environment it would run it with."""
    started = []
    monkeypatch.setattr(team_server, "_run_until_stopped", lambda cmd, env: started.append((cmd, env)) or 0)
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    args = server_command.parse_args(
        ["--state-dir", str(tmp_path / "state"), "--backend-uri", "postgresql://db.invalid/mlflow", *argv]
    )
    assert team_server.serve(args) == 0
    return started[0]


def test_the_admin_password_file_is_the_owners_only_and_never_printed(tmp_path, monkeypatch, capsys):
    cmd, env = _fake_serve(tmp_path, monkeypatch)
    state = tmp_path / "state"
    password = (state / "admin_password").read_text().strip()
    assert len(password) >= 24
    for name in ("admin_password", "secret_key", "basic_auth.ini"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    out, err = capsys.readouterr()
    assert f"first password: {state / 'admin_password'}" in out  # where it is, not what it is
    assert password not in out + err
    assert password not in " ".join(cmd)  # not on a command line (ps shows those to every user)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == password

    # a password file copied in by hand, readable by others: made the owner's only, said in one line
    (state / "admin_password").chmod(0o644)
    _fake_serve(tmp_path, monkeypatch)
    assert stat.S_IMODE((state / "admin_password").stat().st_mode) == 0o600
    out, err = capsys.readouterr()
    assert [line for line in out.splitlines() if "readable by other users" in line] == [
        f"note: {state / 'admin_password'} was readable by other users; made it the owner's only (mode 600)"
    ]
    assert password not in out + err


@pytest.mark.parametrize(
    "host, mlflow_args, warned",
    [
        ("0.0.0.0", [], True),
        ("::", [], True),
        ("192.168.1.20", [], True),
        ("mlflow.lab.example.org", [], True),
        ("127.0.0.1", [], False),
        ("localhost", [], False),
        ("::1", [], False),
        ("127.0.1.1", [], False),
        ("0.0.0.0", ["--uvicorn-opts", "--ssl-certfile /etc/ssl/lab.pem --ssl-keyfile /etc/ssl/lab.key"], False),
    ],
)
def test_serving_beyond_loopback_over_plain_http_warns_in_one_line(
    tmp_path, monkeypatch, capsys, host, mlflow_args, warned
):
    cmd, _ = _fake_serve(tmp_path, monkeypatch, "--host", host, *(["--", *mlflow_args] if mlflow_args else []))
    assert cmd[cmd.index("--host") + 1] == host  # what mlflow server is told to bind
    err = capsys.readouterr().err
    assert (team_server.network_warning(host, mlflow_args) is not None) == warned
    if warned:
        assert err.count("\n") == 1 and err.startswith("warning: ")
        assert "clear text" in err and "HTTPS" in err and "reverse proxy" in err
    else:
        assert err == ""


def test_a_default_permission_above_read_says_that_read_grants_do_not_restrict(tmp_path, monkeypatch, capsys):
    _fake_serve(tmp_path, monkeypatch)  # the default: EDIT
    notes = [line for line in capsys.readouterr().out.splitlines() if "--default-permission" in line]
    assert len(notes) == 1 and "READ grant" in notes[0] and "does not lower" in notes[0]
    _fake_serve(tmp_path, monkeypatch, "--default-permission", "READ")
    assert "--default-permission" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "uri, kept",
    [
        ("http://alice:s3cret@mlflow.lab.example.org:5000", "http://mlflow.lab.example.org:5000"),
        ("https://alice@mlflow.lab.example.org/base", "https://mlflow.lab.example.org/base"),
        ("postgresql://mlflow:s3cret@db.internal/mlflow", "postgresql://db.internal/mlflow"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////work/main/mlflow.db", "sqlite:////work/main/mlflow.db"),
    ],
)
def test_the_run_record_names_the_server_without_a_login_in_its_uri(tmp_path, monkeypatch, uri, kept):
    from cvcl.tracking.run import Run

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    Run(None, "r1", "cvcl-x", "name").to_file(tmp_path / "mlflow_run.json")  # a DVC output, pushed and shared
    assert json.loads((tmp_path / "mlflow_run.json").read_text())["tracking_uri"] == kept


def test_the_servers_secrets_are_the_owners_only_and_no_password_reaches_its_log(server):
    """Last in the module: the log then holds every request of the tests above, failed logins included."""
    for name in ("secret_key", "basic_auth.ini"):
        assert stat.S_IMODE((server.state / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((server.state / "postgres").stat().st_mode) == 0o700
    log = server.log.read_text(errors="replace")
    assert "MLflow tracking server on http://127.0.0.1" in log  # the wrapper's stdout is in it
    assert "POST /api/2.0/mlflow/runs/log-batch" in log  # and mlflow's request log
    tokens = [
        base64.b64encode(f"{user}:{pw}".encode()).decode()
        for user, pw in ((USER, PASSWORD), ("admin", ADMIN_PASSWORD), (BOB, BOB_PASSWORD))
    ]
    assert [s for s in (*SECRETS, *tokens) if s in log] == []


def test_a_model_pickled_by_a_teammate_runs_no_code_for_whoever_predicts_or_registers(server, monkeypatch, tmp_path):
    """alice (EDIT on her experiment) logs a pickled "model" with the project's metadata whose
    unpickling would create a marker; bob's `cvcl predict` and alice's own `cvcl register` refuse
    it in one line naming the URI, and the marker never appears."""
    import subprocess
    import sys

    from tests.helpers import env
    from tests.test_model_safety import Trap, _log_pickle

    marker = tmp_path / "pwned"
    for key, value in {"MLFLOW_TRACKING_URI": server.uri, "MLFLOW_TRACKING_USERNAME": USER}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    run_id = _log_pickle(Trap(marker), "teammate")
    assert not marker.exists()
    cvcl = str(Path(sys.executable).parent / "cvcl")
    scan = tmp_path / "scan.nii.gz"  # never read: the model is refused before the scans are looked at
    as_bob = {**env(), "MLFLOW_TRACKING_URI": server.uri, "MLFLOW_TRACKING_USERNAME": BOB}
    as_bob["MLFLOW_TRACKING_PASSWORD"] = BOB_PASSWORD
    uri = f"runs:/{run_id}/model"
    done = subprocess.run(
        [cvcl, "predict", "--model", uri, "--input", str(scan), "--output", str(tmp_path / "out")],
        env=as_bob,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and uri in done.stderr and "pickle" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    as_alice = {**as_bob, "MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    registered = subprocess.run(
        [cvcl, "register", "--experiment", "cvcl-synthetic-la", "--name", "trap", "--metric", "val_dice"],
        env=as_alice,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert registered.returncode == 2 and "pickle" in registered.stderr, registered.stderr
    assert not marker.exists()
    assert all(secret not in done.stderr + registered.stderr for secret in SECRETS)
