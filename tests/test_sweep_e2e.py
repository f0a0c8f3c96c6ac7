"""A tiny queued sweep run by parallel DVC workers, then compared in MLflow and the notebook (slow).

One worker dies mid-experiment (SIGKILL to the worker and every process under it, as when its
machine goes down) after the experiment's first checkpoint; the point is queued again, resumes
from its checkpoint in its own MLflow run, and the sweep ends with one FINISHED run per point.
"""

import json
import os
import subprocess
import time

import nbformat
import pytest
import yaml
from mlflow import MlflowClient
from nbclient import NotebookClient

from cvcl.entrypoint import parent_pid
from tests.helpers import TINY, copy_repository, env, run, set_params

pytestmark = pytest.mark.slow


ITERATIONS, CHECKPOINT_EVERY = 9, 3
KILLED: dict = {}


def wait_for_queue(repo, timeout=1200, dead: str | None = None):
    """The queue's status once nothing is queued or running (``dead``: a task whose worker was
    killed, which DVC goes on listing as Running)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        live = [line for line in status.splitlines() if not (dead and f" {dead} " in f" {line} ")]
        if not any(word in line for line in live for word in ("Queued", "Running")):
            return status
        time.sleep(5)
    raise AssertionError(f"queue not drained after {timeout} s:\n{status}")


def _children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            found += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return found


def kill_worker_after_first_checkpoint(repo, timeout=600) -> dict:
    """SIGKILL the queue worker running the first training to write a checkpoint, with every
    process under it; the killed experiment's name and point (method, seed)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not list((repo / ".cvcl" / "checkpoints").glob("*/state.pt")):
        time.sleep(0.2)
    for proc in os.listdir("/proc"):
        try:
            cmdline = open(f"/proc/{proc}/cmdline", "rb").read().split(b"\0")
            cwd = os.readlink(f"/proc/{proc}/cwd")
            environ = open(f"/proc/{proc}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"stages.train" not in cmdline or not cwd.startswith(str(repo)):
            continue
        name = next(e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"DVC_EXP_NAME="))
        params = yaml.safe_load(open(os.path.join(cwd, "params.yaml")).read())
        worker = int(proc)
        while b"queue-worker" not in open(f"/proc/{worker}/cmdline", "rb").read():
            worker = parent_pid(worker)
        tree, todo = [], [worker]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo += _children(pid)
        for pid in tree:
            os.kill(pid, 9)
        return {"name": name, "method": params["method"], "seed": params["seed"]}
    raise AssertionError("no training wrote a checkpoint")


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
    set_params(
        repo, {**TINY, "train": {**TINY["train"], "iterations": ITERATIONS, "checkpoint_every": CHECKPOINT_EVERY}}
    )
    run(["git", "commit", "-q", "-am", "tiny params"], repo)
    run(["dvc", "exp", "run", "--queue", "-S", "method=cvcl,supervised", "-S", "seed=1,2"], repo)
    try:
        start_workers(repo, 1)  # one worker first: the training to checkpoint first is the one killed
        KILLED.update(kill_worker_after_first_checkpoint(repo))
        # the user's way back: the same point queued again (behind the others, whose stages
        # close the abandoned run KILLED first); it resumes from the checkpoint
        run(["dvc", "exp", "run", "--queue", "-S", f"method={KILLED['method']}", "-S", f"seed={KILLED['seed']}"], repo)
        start_workers(repo, 2)
        status = wait_for_queue(repo, dead=KILLED["name"])
    finally:
        run(["dvc", "queue", "stop", "--kill"], repo, check=False)
        kill_leftover_workers(repo)
    assert "Failed" not in status, status
    return repo


def start_workers(repo, n: int) -> None:
    # no pipes: the workers `dvc queue start` leaves behind would hold them open, and the call
    # would last as long as the workers (for ever, if one never shuts down); the status tells
    subprocess.run(
        ["dvc", "queue", "start", "-j", str(n)],
        cwd=repo,
        env=env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=300,
    )


def _runs(repo) -> list:
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cvcl-synthetic-la")
    return client.search_runs([exp.experiment_id])


def test_a_killed_worker_leaves_its_run_killed_with_a_reason_and_the_requeued_point_resumes_it(swept):
    point = [
        r
        for r in _runs(swept)
        if (r.data.params["method"], r.data.params["seed"]) == (KILLED["method"], str(KILLED["seed"]))
    ]
    assert len(point) == 1, [r.info.status for r in point]  # resumed in the killed run, not a second one
    resumed = point[0]
    assert resumed.info.status == "FINISHED" and resumed.data.tags.get("cvcl.resumed") == "true"
    # closed KILLED, with the reason, while the worker was gone; the reason kept as history
    assert "ended without closing the run (killed)" in resumed.data.tags["cvcl.interrupted"]
    assert "cvcl.end_reason" not in resumed.data.tags
    client = MlflowClient(f"sqlite:///{swept / 'mlflow.db'}")
    steps = sorted(m.step for m in client.get_metric_history(resumed.info.run_id, "loss"))
    assert steps == list(range(ITERATIONS))  # the resumed steps are not logged twice
    assert resumed.data.tags["dvc_exp_name"] != KILLED["name"]  # the requeued experiment finished it


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
        steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "loss"))
        assert steps == list(range(ITERATIONS))
        assert {"dvc_exp_name", "dvc_baseline_rev", "git_commit", "data_version", "dataset", "method"} <= set(
            r.data.tags
        )
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
    assert "±" in joined  # the mean +- std table
    assert "mean_diff" in joined  # the paired comparison
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # Dice-vs-labeled plot and the weight heatmap
