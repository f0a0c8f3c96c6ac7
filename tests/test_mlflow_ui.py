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
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_ui_binds_to_loopback_only():
    recipe = (ROOT / "Makefile").read_text().split("\nui:")[1].split("\n\n")[0]
    assert "--host 127.0.0.1" in recipe and "0.0.0.0" not in recipe


@pytest.fixture
def server(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from cvcl.tracking.run import stage_status, start_run

    runs = {}
    for seed in (1, 2):
        run = start_run("synthetic-la", f"cvcl-l4-pcl1-vcl1-s{seed}",
                        {"labeled": 4, "method": "cvcl", "seed": seed, "train.lr": 0.01, "loss.vcl_weight": 1.0},
                        {"dataset": "synthetic-la", "method": "cvcl"})
        with stage_status(run):
            run.log_metrics({"dice": 0.8 + seed / 100})
        runs[seed] = run.run_id
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
            page.goto(f"{base}/#/experiments/{experiment_id}/runs/{runs[2]}", wait_until="domcontentloaded",
                      timeout=120_000)
            page.get_by_text("train.lr").first.wait_for(timeout=90_000)
            body = page.inner_text("body")
            for text in ("labeled", "loss.vcl_weight", "dice", "0.82", runs[2]):
                assert text in body, text
        finally:
            browser.close()
