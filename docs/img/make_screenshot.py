"""Regenerate ``docs/img/mlflow-runs-table.png``: the MLflow UI's runs table in the pipeline's
saved view (:mod:`cvcl.tracking.ui`), over a throwaway store of runs made the way the stages
make them (train's params, evaluate's metrics; values from the README's CPU-demo table).

    .venv/bin/python docs/img/make_screenshot.py [--out PATH]

Needs Debian's chromium and the playwright package (dev extra). Nothing outside a temporary
folder is written but the picture.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# method, pcl, vcl, Dice, Jaccard, HD95, ASD: the README's means (CPU demo, 4 labeled)
CONFIGS = [
    ("supervised", 1.0, 0.05, 0.8220, 0.7138, 16.62, 5.28),
    ("mean_teacher", 1.0, 0.05, 0.8811, 0.7936, 12.29, 3.65),
    ("cvcl", 1.0, 0.0, 0.8494, 0.7491, 13.78, 4.38),
    ("cvcl", 0.0, 0.05, 0.9057, 0.8329, 7.58, 2.11),
    ("cvcl", 1.0, 0.05, 0.8890, 0.8096, 10.36, 3.00),
]
SEEDS = (1, 2)


def seed_store(folder: Path) -> str:
    """Runs in a SQLite store under ``folder``, started as ``python -m stages.train`` starts
    them; returns the store's URI."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["DVC_ROOT"] = str(folder)  # artifact locations under the throwaway folder
    from cvcl.params import load_params
    from cvcl.tracking.naming import run_name
    from cvcl.tracking.run import stage_status, start_run
    from cvcl.training.config import TRACKED

    # the run's source is the module the process runs: the train stage's, as under DVC
    sys.modules["__main__"].__spec__ = types.SimpleNamespace(name="stages.train")
    base = load_params(ROOT / "params.yaml").flat(TRACKED)
    version = hashlib.md5(b"synthetic-la").hexdigest() + ".dir"
    for method, pcl, vcl, dice, jaccard, hd95, asd in CONFIGS:
        for seed in SEEDS:
            weights = {"loss.pcl_weight": pcl, "loss.vcl_weight": vcl}
            params = {**base, "method": method, "seed": seed, **weights}
            name = run_name(method, params["labeled"], seed, weights)
            run = start_run(
                params["dataset"],
                name,
                params,
                {"dataset": params["dataset"], "method": method},
                dataset_version=version,
            )
            shift = 0.01 * (seed - 1.5)
            with stage_status(run):
                run.log_metrics(
                    {
                        "dice": round(dice + shift, 4),
                        "jaccard": round(jaccard + shift, 4),
                        "hd95": round(hd95 - 10 * shift, 2),
                        "asd": round(asd - 2 * shift, 2),
                    }
                )
    return uri


@contextlib.contextmanager
def serve(uri: str) -> Iterator[str]:
    """``mlflow ui`` on a free loopback port over ``uri``; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                if r.status == 200:
                    break
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("the MLflow UI did not come up")
            time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def shoot(base: str, experiment_id: str, out: Path) -> None:
    """Open the saved view as a user's first visit would and save the window as PNG."""
    from playwright.sync_api import sync_playwright

    from cvcl.tracking.ui import runs_url

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 800})
            # MLflow's assistant panel opens itself on a first visit and takes a third of the window
            context.add_init_script(
                "localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true')"
            )
            page = context.new_page()
            page.goto(runs_url(base, experiment_id), wait_until="domcontentloaded", timeout=120_000)
            page.get_by_text("loss.consistency").first.wait_for(timeout=90_000)
            page.get_by_role("button", name="Toggle sidebar").first.click()
            page.wait_for_timeout(1500)  # the grid re-lays its columns after the sidebar's animation
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "mlflow-runs-table.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = seed_store(Path(tmp))
        from mlflow import MlflowClient

        experiment_id = MlflowClient(uri).get_experiment_by_name("cvcl-synthetic-la").experiment_id
        with serve(uri) as base:
            shoot(base, experiment_id, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
