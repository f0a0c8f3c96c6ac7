"""The MLflow UI in a real (headless) browser shows our experiment, runs and params (slow).

Needs Debian's chromium (`.ci/run` installs it) and the playwright package (dev extra);
skips, saying why, where either is missing.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DATA_VERSION = "5f0e4a1c9b8d7e6f5a4b3c2d1e0f9a8b.dir"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_ui_binds_to_loopback_only():
    recipe = (ROOT / "Makefile").read_text().split("\nui:")[1].split("\n\n")[0]
    assert "--host 127.0.0.1" in recipe and "0.0.0.0" not in recipe
    assert "--app-name cvcl" in recipe  # the app that opens experiments on their runs (the browser test's)


@pytest.fixture
def server(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # the runs are started as DVC starts them: python -m stages.train
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", types.SimpleNamespace(name="stages.train"), raising=False)
    from cvcl.tracking.run import stage_status, start_run

    runs = {}
    for seed in (1, 2):
        run = start_run(
            "synthetic-la",
            f"cvcl-l4-pcl1-vcl1-s{seed}",
            {
                "labeled": 4,
                "method": "cvcl",
                "seed": seed,
                "train.lr": 0.01,
                "loss.pcl_weight": 1.0,
                "loss.vcl_weight": 1.0,
                "loss.consistency": 0.1,
            },
            {"dataset": "synthetic-la", "method": "cvcl"},
            dataset_version=DATA_VERSION,
        )
        with stage_status(run):
            run.log_metrics({"dice": 0.8 + seed / 100, "jaccard": 0.7, "hd95": 9.5, "asd": 2.5})
        runs[seed] = run.run_id
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    # as `make ui` starts it: MLflow's app plugin of this project (cvcl/tracking/ui_app.py)
    proc = subprocess.Popen(
        [
            str(mlflow),
            "ui",
            "--app-name",
            "cvcl",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise AssertionError("the MLflow UI did not come up")
            time.sleep(1)
        yield base, runs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_experiment_runs_and_params_are_visible_in_the_browser(server):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (CI installs Debian's chromium in .ci/run)")
    playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    base, runs = server
    from mlflow import MlflowClient

    experiment_id = MlflowClient().get_experiment_by_name("cvcl-synthetic-la").experiment_id
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/#/experiments", wait_until="domcontentloaded", timeout=120_000)
            page.get_by_text("cvcl-synthetic-la").first.wait_for(timeout=90_000)
            # the runs table of the experiment (the UI opens experiments on traces by default)
            page.goto(f"{base}/#/experiments/{experiment_id}/runs", wait_until="domcontentloaded", timeout=120_000)
            page.get_by_text("cvcl-l4-pcl1-vcl1-s1").first.wait_for(timeout=90_000)
            page.get_by_text("cvcl-l4-pcl1-vcl1-s2").first.wait_for(timeout=30_000)
            page.goto(
                f"{base}/#/experiments/{experiment_id}/runs/{runs[2]}", wait_until="domcontentloaded", timeout=120_000
            )
            page.get_by_text("train.lr").first.wait_for(timeout=90_000)
            body = page.inner_text("body")
            for text in ("labeled", "loss.vcl_weight", "dice", "0.82", runs[2]):
                assert text in body, text
        finally:
            browser.close()


def browser_or_skip() -> types.ModuleType:
    """playwright's sync API, or a skip saying what is missing."""
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (CI installs Debian's chromium in .ci/run)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def test_experiments_open_on_the_runs_with_dataset_source_and_the_saved_view(server):
    playwright = browser_or_skip()
    base, runs = server
    from mlflow import MlflowClient

    from cvcl.tracking.ui import RUNS_VIEW_NAME, runs_url

    experiment_id = MlflowClient().get_experiment_by_name("cvcl-synthetic-la").experiment_id
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            # A first visit in a fresh browser, opening the experiment by its plain URL, as its link
            # in the experiment list leads: the runs table, not the GenAI overview, and no switch
            # to find first.
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            page.goto(f"{base}/#/experiments/{experiment_id}", wait_until="domcontentloaded", timeout=120_000)
            page.get_by_text("cvcl-l4-pcl1-vcl1-s2").first.wait_for(timeout=90_000)
            page.get_by_text("cvcl-l4-pcl1-vcl1-s1").first.wait_for(timeout=30_000)
            assert f"/experiments/{experiment_id}/runs" in page.url
            body = page.inner_text("body")
            for genai in ("Token Usage", "No data available", "Tool calls"):  # the GenAI overview's
                assert genai not in body, genai
            assert page.get_by_role("columnheader", name="Dataset", exact=True).count() >= 1
            assert page.get_by_role("columnheader", name="Source", exact=True).count() >= 1
            datasets = page.get_by_text(f"synthetic-la ({DATA_VERSION})")
            datasets.first.wait_for(timeout=30_000)
            assert datasets.count() == 2
            assert page.get_by_text("train.py", exact=True).count() == 2

            # The link the sweep prints: the saved view in a fresh browser, whatever its switch
            # (a wide window: the table renders only the columns in sight).
            page = browser.new_context(viewport={"width": 2400, "height": 900}).new_page()
            page.goto(runs_url(base, experiment_id), wait_until="domcontentloaded", timeout=120_000)
            page.get_by_text("cvcl-l4-pcl1-vcl1-s2").first.wait_for(timeout=90_000)
            page.get_by_text(RUNS_VIEW_NAME).first.wait_for(timeout=30_000)
            for column in ("dice", "method", "labeled", "loss.pcl_weight", "loss.vcl_weight", "loss.consistency"):
                assert page.get_by_role("columnheader", name=column, exact=True).count() >= 1, column
            body = page.inner_text("body")
            # sorted by Dice, best first
            assert body.index("cvcl-l4-pcl1-vcl1-s2") < body.index("cvcl-l4-pcl1-vcl1-s1")
            assert "0.82" in body and "0.81" in body

            # A user who chose GenAI keeps that choice: the default applies only to a browser
            # that has none.
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_init_script("window.localStorage.setItem('mlflow.workflowType_v1', '\"genai\"')")
            page = context.new_page()
            page.goto(f"{base}/#/experiments/{experiment_id}", wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_url("**/overview**", timeout=90_000)
            assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") == '"genai"'
        finally:
            browser.close()
