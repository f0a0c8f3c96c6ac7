"""A tiny queued sweep run by parallel DVC workers, then compared in MLflow and the notebook (slow)."""

import json
import os
import subprocess
import time

import nbformat
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient

from tests.helpers import TINY, copy_repository, env, run, set_params

pytestmark = pytest.mark.slow


def wait_for_queue(repo, timeout=1200):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(5)
    raise AssertionError(f"queue not drained after {timeout} s:\n{status}")


def kill_leftover_workers(repo) -> None:
    """Kill DVC queue processes still running in ``repo``: now and then a worker whose monitor
    thread died ignores `dvc queue stop` and would outlive the test."""
    for proc in os.listdir("/proc"):
        try:
            if not proc.isdigit() or os.readlink(f"/proc/{proc}/cwd") != str(repo):
                continue
            cmdline = open(f"/proc/{proc}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"queue-worker" in cmdline or b"queue" in cmdline[2:4]:
            os.kill(int(proc), 9)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    repo = copy_repository(tmp_path_factory.mktemp("sweep"))
    set_params(repo, TINY)
    run(["git", "commit", "-q", "-am", "tiny params"], repo)
    run(["dvc", "exp", "run", "--queue", "-S", "method=cvcl,supervised", "-S", "seed=1,2"], repo)
    # no pipes: the workers `dvc queue start` leaves behind would hold them open, and the call
    # would last as long as the workers (for ever, if one never shuts down); the status tells
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=repo, env=env(), stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300)
    try:
        status = wait_for_queue(repo)
    finally:
        run(["dvc", "queue", "stop", "--kill"], repo, check=False)
        kill_leftover_workers(repo)
    assert "Failed" not in status, status
    return repo


def test_every_queued_experiment_is_one_finished_run_with_full_curves(swept):
    client = MlflowClient(f"sqlite:///{swept / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cvcl-synthetic-la")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 4
    assert all(r.info.status == "FINISHED" for r in runs)
    configs = sorted((r.data.params["method"], r.data.params["seed"]) for r in runs)
    assert configs == [("cvcl", "1"), ("cvcl", "2"), ("supervised", "1"), ("supervised", "2")]
    names = {r.info.run_name for r in runs}
    assert names == {"cvcl-l2-pcl1-vcl1-s1", "cvcl-l2-pcl1-vcl1-s2", "supervised-l2-s1", "supervised-l2-s2"}
    for r in runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "loss")]
        assert steps == list(range(TINY["train"]["iterations"]))
        assert {"dvc_exp_name", "dvc_baseline_rev", "git_commit", "data_version", "dataset", "method"} <= set(r.data.tags)
        assert {"dice", "jaccard", "hd95", "asd"} <= set(r.data.metrics)
    # artifacts live beside the store, not in the deleted temporary workspaces
    assert all(os.path.isdir(swept / "mlruns") for _ in runs)
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"metrics.json", "per_case.csv"} <= artifacts


def test_dvc_exp_show_and_mlflow_agree(swept):
    shown = json.loads(run(["dvc", "exp", "show", "--json"], swept).stdout)
    by_name = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            revs = exp.get("revs") or []
            for rev in revs:
                data = rev.get("data") or {}
                name = rev.get("name") or exp.get("name")
                metrics = (data.get("metrics") or {}).get("metrics/metrics.json", {}).get("data", {})
                if name and "dice" in metrics:
                    by_name[name] = metrics["dice"]
    client = MlflowClient(f"sqlite:///{swept / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cvcl-synthetic-la")
    runs = client.search_runs([exp.experiment_id])
    assert len(by_name) == 4, shown
    for r in runs:
        assert r.data.metrics["dice"] == pytest.approx(by_name[r.data.tags["dvc_exp_name"]])


def test_ablation_notebook_runs_headless_on_the_sweep(swept, monkeypatch):
    from tests.conftest import ROOT

    nb = nbformat.read(ROOT / "notebooks" / "ablations.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped"
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{swept / 'mlflow.db'}")
    monkeypatch.setenv("CVCL_EXPERIMENT", "cvcl-synthetic-la")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(swept)}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + (out.get("data", {}).get("text/plain", "")))
    joined = "\n".join(texts)
    assert "4 finished runs" in joined
    assert "cvcl (pcl 1, vcl 1)" in joined and "supervised" in joined
    assert "±" in joined                      # the mean +- std table
    assert "mean_diff" in joined              # the paired comparison
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2                   # Dice-vs-labeled plot and the weight heatmap
