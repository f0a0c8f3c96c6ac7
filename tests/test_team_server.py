"""The team tracking server for real: PostgreSQL and `mlflow server` with basic auth on loopback,
started by ``cvcl server`` as ``make server`` does, and the pipeline's stages
logging to it through MLFLOW_TRACKING_URI/USERNAME/PASSWORD alone.

Services start once for the module; the restart test comes last, as it stops and restarts them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from cvcl.tracking.server import pg_binary
from tests.helpers import run, stage_workspace
from tests.team_server import PASSWORD, USER, TeamServer, free_port, running_team_server

pytestmark = pytest.mark.slow

STAGES = ("download", "preprocess", "split", "train", "infer", "evaluate")


@pytest.fixture(scope="module")
def server():
    with running_team_server() as team:
        yield team


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory):
    """A tiny pipeline run (4 iterations) logged to the server as ``alice``; its workspace, with
    what each stage printed in ``stage_logs/<stage>.log``."""
    ws = stage_workspace(tmp_path_factory.mktemp("team") / "ws")
    (ws / "stage_logs").mkdir()
    for stage in STAGES:
        proc = run(["python", "-m", f"stages.{stage}"], ws, extra_env=server.env())
        (ws / "stage_logs" / f"{stage}.log").write_text(proc.stdout + proc.stderr)
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
    fetched = requests.get(
        f"{server.uri}/get-artifact",
        params={"run_uuid": record["run_id"], "path": "metrics.json"},
        auth=(USER, PASSWORD),
        timeout=30,
    )
    assert fetched.status_code == 200 and fetched.json() == summary
    assert list((server.state / "artifacts").rglob("model.pt"))


def _files(folder) -> list:
    """The files under ``folder``, symbolic links (the workspace's code) not followed."""
    return [
        os.path.join(top, name)
        for top, _, names in os.walk(folder)
        for name in names
        if not os.path.islink(os.path.join(top, name))
    ]


def test_no_password_reaches_the_store_the_artifacts_or_what_the_stages_wrote(server, pipeline):
    """The stages logged with MLFLOW_TRACKING_USERNAME/PASSWORD set: neither the password nor its
    HTTP Basic token is in PostgreSQL's databases (runs, params, tags; users: hashes only), the
    artifacts, or the workspace (params, the run record, metrics, outputs, what the stages printed)."""
    record = json.loads((pipeline / "models" / "mlflow_run.json").read_text())
    secrets = [PASSWORD, server.admin_password, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()]
    cluster = server.cluster()
    dumps = {
        db: subprocess.run(
            [pg_binary("pg_dump"), "-h", str(cluster.folder), "-p", "5432", "-U", "mlflow", db],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        for db in ("mlflow", "mlflow_auth")
    }
    assert record["run_id"] in dumps["mlflow"] and "train.iterations" in dumps["mlflow"]  # the runs are in it
    assert "alice" in dumps["mlflow_auth"]
    assert [(db, s) for db, text in dumps.items() for s in secrets if s in text] == []
    artifacts = _files(server.state / "artifacts")
    workspace = _files(pipeline)
    assert any(p.endswith("model.pt") for p in artifacts) and len(workspace) > 10
    assert {os.path.basename(p) for p in workspace} >= {"mlflow_run.json", "params.yaml", "train.log"}
    leaks = [(p, s) for p in artifacts + workspace for s in secrets if s.encode() in Path(p).read_bytes()]
    assert leaks == []
    assert record["tracking_uri"] == server.uri  # the run record names the server, no login in it


@pytest.mark.parametrize("case", ["wrong password", "server down"])
def test_a_refused_login_or_a_missing_server_stops_train_with_one_line_before_training(
    server, pipeline, tmp_path, case
):
    ws = stage_workspace(tmp_path / "ws")
    shutil.copytree(pipeline / "data", ws / "data")  # processed cases and split: train's inputs
    record = json.loads((pipeline / "models" / "mlflow_run.json").read_text())
    before = len(_experiment_runs(server, record))
    env = (
        server.env(password="not-" + PASSWORD)
        if case == "wrong password"
        else {**server.env(), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    )
    started = time.monotonic()
    proc = run(["python", "-m", "stages.train"], ws, check=False, extra_env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    expected = (
        "MLFLOW_TRACKING_USERNAME/PASSWORD (user 'alice') were refused (HTTP 401)"
        if case == "wrong password"
        else "cannot be reached ([Errno 111] Connection refused)"
    )
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


def test_the_team_servers_ui_asks_a_login_and_opens_experiments_on_their_runs(server):
    from cvcl.tracking.ui_app import LANDING_SCRIPT

    assert requests.get(f"{server.uri}/", timeout=30).status_code == 401
    page = requests.get(f"{server.uri}/", auth=(USER, PASSWORD), timeout=30)
    assert page.status_code == 200 and "<head>" + LANDING_SCRIPT in page.text


def test_with_a_login_the_ui_opens_on_the_experiments_and_the_ablation_columns(server, pipeline):
    """`make server`'s UI (the login app) as a teammate sees it at 1366x768: the experiments, not
    MLflow's welcome page, then the pipeline's experiment on its ablation columns, in sight."""
    from tests.test_mlflow_ui import BROWSER_ARGS, CHROMIUM, SMALL, assert_in_viewport, browser_or_skip

    playwright = browser_or_skip()
    record = json.loads((pipeline / "models" / "mlflow_run.json").read_text())
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport=SMALL, http_credentials={"username": USER, "password": PASSWORD})
            page = context.new_page()
            page.goto(f"{server.uri}/", wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_url("**/#/experiments**", timeout=90_000)
            page.get_by_text(record["experiment"]).first.wait_for(timeout=90_000)
            assert page.get_by_text("Welcome to MLflow").count() == 0
            page.get_by_text(record["experiment"]).first.click()
            page.get_by_text(record["run_name"]).first.wait_for(timeout=90_000)
            for column in ("method", "labeled", "seed", "dice", "hd95"):
                header = page.get_by_role("columnheader", name=column, exact=True).first
                header.wait_for(timeout=30_000)
                assert_in_viewport(page, header, column)
            assert "shared view" not in page.inner_text("body")
        finally:
            browser.close()
