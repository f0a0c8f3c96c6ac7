"""A 2x2 sweep on a two-node Ray cluster on loopback (slow; README, "Sweeps on a Ray cluster").

A bare git remote ``origin`` and a folder DVC remote hold the baseline commit and its data (the
fixture runs the data stages once and pushes them); the runs go to the team server (PostgreSQL,
basic auth, as ``make server`` starts it: tests/team_server.py) as the user alice; ``ray start``
makes a head and one worker node of one CPU each. The sweep's driver is the user's command,
``cvcl sweep-ray``, run as a subprocess. One point's first attempt is killed mid-run (the task's
process and its ``dvc exp run``) to show the retry: that sweep's driver is the same command with
the killing task of tests/ray_kill.py (``python -m tests.ray_kill``), which the cluster's workers
import from the repository (``PYTHONPATH``).
``CVCL_RAY_TIMING=1`` also runs the grid on one node, for the one-node-versus-two timing.
The nodes hold alice's login themselves (in ``ray start``'s environment, docs/tracking.md): the
driver hands its tasks the server's URI only, and no password reaches what Ray keeps of them.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cvcl.commands.sweep_ray import exp_name
from tests.conftest import ROOT
from tests.helpers import BIN, TINY, copy_repository, run, set_params
from tests.ray_kill import KILL_ONCE
from tests.team_server import free_port, running_team_server

pytestmark = pytest.mark.slow
pytest.importorskip("ray", reason="ray is not installed: pip install -e '.[cluster]'")

ITERATIONS = 4  # TINY's; the killed attempt is killed during them
GRID = ["-S", "method=cvcl,supervised", "-S", "seed=1,2"]
KILLED = {"method": "cvcl", "seed": "1"}
TIMES: dict[str, float] = {}


def ray_cmd(*args: str, check: bool = True, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run(
        [str(BIN / "ray"), *args, "--disable-usage-stats"] if args[0] == "start" else [str(BIN / "ray"), *args],
        Path("/tmp"),
        check=check,
        timeout=120,
        extra_env=extra_env,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """origin, the DVC remote with the baseline's data, a team MLflow server, and a 2-node Ray cluster."""
    root = tmp_path_factory.mktemp("raylab")
    origin, storage, repo = root / "origin.git", root / "dvc-storage", root / "repo"
    run(["git", "init", "-q", "--bare", str(origin)], root)
    storage.mkdir()
    repo.mkdir()
    copy_repository(repo)
    set_params(repo, {**TINY, "train": {**TINY["train"], "iterations": ITERATIONS}})
    run(["dvc", "remote", "add", "-d", "storage", str(storage)], repo)
    started = time.time()
    run(["dvc", "repro", "split"], repo)  # the data every experiment shares, made once
    TIMES["data stages (once)"] = time.time() - started
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "tiny params, DVC remote, data"], repo)
    run(["dvc", "push", "-q"], repo)
    run(["git", "remote", "add", "origin", str(origin)], repo)
    branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], repo).stdout.strip()
    run(["git", "push", "-q", "-u", "origin", branch], repo)

    ray_port = free_port()
    raytmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths live here
    marker = root / "killed-once"
    # the workers inherit this: tests.ray_kill importable, and the point its killing task kills
    workers_env = {"PYTHONPATH": str(ROOT), KILL_ONCE: f"{marker}:{exp_name(KILLED)}"}
    with running_team_server() as team:
        # each node's own MLflow login (docs/tracking.md): the driver passes none to its tasks
        workers_env.update({k: v for k, v in team.env().items() if k != "MLFLOW_TRACKING_URI"})
        try:
            started = time.time()
            ray_cmd(
                "start",
                "--head",
                "--port",
                str(ray_port),
                "--num-cpus",
                "1",
                "--include-dashboard",
                "false",
                "--temp-dir",
                str(raytmp),
                extra_env=workers_env,
            )
            ray_cmd("start", "--address", f"127.0.0.1:{ray_port}", "--num-cpus", "1", extra_env=workers_env)
            TIMES["ray start (head + worker)"] = time.time() - started
            yield {
                "root": root,
                "origin": origin,
                "repo": repo,
                "branch": branch,
                "uri": team.uri,
                "env": team.env(),
                "address": f"127.0.0.1:{ray_port}",
                "marker": marker,
            }
        finally:
            ray_cmd("stop", "--force", check=False)
            shutil.rmtree(raytmp, ignore_errors=True)
        print("\n" + "\n".join(f"TIME {k}: {v:.1f} s" for k, v in TIMES.items()))  # pytest -s shows them


def sweep(lab, driver: tuple[str, ...] = ("cvcl", "sweep-ray"), address: str | None = None) -> tuple[dict, str]:
    """``driver --address ... GRID`` in the repository; its summary and output."""
    started = time.time()
    proc = run(
        [*driver, "--address", address or lab["address"], *GRID],
        lab["repo"],
        check=False,
        # a guard against a hang, not a speed check: the grid takes minutes on idle cores and
        # over 15 on two cores that two trainings share (measured), so the guard is far above both
        timeout=2700,
        extra_env=lab["env"],
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    summary = json.loads(out.split("summary:", 1)[1].splitlines()[0])
    summary["wall"] = time.time() - started
    return summary, out


@pytest.fixture(scope="module")
def swept(lab):
    summary, out = sweep(lab, driver=(sys.executable, "-m", "tests.ray_kill"))
    TIMES["2x2 grid on two nodes (one point killed and retried)"] = summary["wall"]
    for r in summary["done"]:
        t = r["times"]
        TIMES[f"{r['name']}: clone + pull + push"] = t["clone"] + t["pull"] + t["push"]
        TIMES[f"{r['name']}: dvc exp run"] = t["exp_run"]
    return summary, out


# what Ray keeps of every task and job (their runtime environments included), read from its GCS:
# the data `ray list tasks --detail` serves, whose state API needs ray[default] and the dashboard
RAY_STATE = """
import sys

import ray
from ray._private.state import state

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(*(str(event) for event in state._get_all_task_events()), state.job_table(), sep="\\n")
ray.shutdown()
"""


def _ray_state(lab) -> str:
    return run([sys.executable, "-c", RAY_STATE, lab["address"]], Path("/tmp"), timeout=300).stdout


def _runs(lab) -> list:
    from mlflow import MlflowClient

    saved = {k: os.environ.get(k) for k in lab["env"]}
    os.environ.update(lab["env"])  # MLflow's client reads the login from the environment
    try:
        client = MlflowClient(lab["uri"])
        exp = client.get_experiment_by_name("cvcl-synthetic-la")
        return client.search_runs([exp.experiment_id], max_results=100)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_the_grid_runs_across_both_nodes_as_four_finished_runs(lab, swept):
    summary, out = swept
    assert not summary["failed"] and len(summary["done"]) == 4, out[-3000:]
    assert "done 4 / running 0 / failed 0" in out and "MLflow: http://127.0.0.1:" in out
    commit = run(["git", "rev-parse", "HEAD"], lab["repo"]).stdout.strip()
    finished = [r for r in _runs(lab) if r.info.status == "FINISHED"]
    points = sorted((r.data.params["method"], r.data.params["seed"]) for r in finished)
    assert points == [("cvcl", "1"), ("cvcl", "2"), ("supervised", "1"), ("supervised", "2")]  # 0 duplicates
    assert all(r.data.tags["git_commit"] == commit for r in finished)
    nodes = {r.data.tags["cvcl.node"].split()[0] for r in finished}
    assert nodes == {r["node"] for r in summary["done"]} and len(nodes) == 2, nodes
    for r in finished:
        assert {"dice", "hd95"} <= set(r.data.metrics)
    # the driver ran with alice's password set: Ray, which shows its tasks to everyone who reaches
    # the cluster, holds their runtime environment (the server's URI) but not the password
    shown = _ray_state(lab)
    password = lab["env"]["MLFLOW_TRACKING_PASSWORD"]
    assert lab["uri"] in shown and password not in shown, shown[-2000:].replace(password, "***")


def test_a_killed_task_is_retried_and_its_point_finishes_once(lab, swept):
    summary, _ = swept
    assert lab["marker"].is_file()  # the first attempt of KILLED was killed mid-run
    assert exp_name(KILLED) in {r["name"] for r in summary["done"]}
    same = [r for r in _runs(lab) if r.data.params.get("method") == "cvcl" and r.data.params.get("seed") == "1"]
    statuses = sorted(r.info.status for r in same)
    print(f"\nruns of the killed point: {statuses}")
    # the killed attempt's run is closed KILLED by the sweep once the retry has finished the point
    assert statuses == ["FINISHED", "KILLED"], statuses
    killed = next(r for r in same if r.info.status == "KILLED")
    assert "killed" in killed.data.tags.get("cvcl.end_reason", "")


def test_the_experiments_reach_a_fresh_clone_with_exp_pull(lab, swept):
    fresh = lab["root"] / "fresh"
    run(["git", "clone", "-q", "-b", lab["branch"], str(lab["origin"]), str(fresh)], lab["root"])
    names = sorted(r["name"] for r in swept[0]["done"])
    run(["dvc", "exp", "pull", "origin", *names], fresh)
    listed = run(["dvc", "exp", "list", "--names-only"], fresh).stdout.split()
    assert sorted(listed) == names


def test_a_rerun_skips_every_finished_point(lab, swept):
    summary, out = sweep(lab)
    assert len(summary["skipped"]) == 4 and not summary["done"] and not summary["failed"], out[-2000:]
    assert len([r for r in _runs(lab) if r.info.status == "FINISHED"]) == 4
    TIMES["rerun (all skipped)"] = summary["wall"]


def test_a_bad_address_or_missing_remote_is_one_line(lab, tmp_path):
    proc = run(
        ["cvcl", "sweep", "--executor", "ray", "--address", "127.0.0.1:1"],
        lab["repo"],
        check=False,
        extra_env=lab["env"],
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "error: --address 127.0.0.1:1: no Ray head answers there" in proc.stderr
    lone = tmp_path / "lone"
    lone.mkdir()
    copy_repository(lone)
    proc = run(["cvcl", "sweep-ray", "--address", lab["address"], *GRID], lone, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: no git remote 'origin': the workers clone it (git remote add origin URL)"
    )


@pytest.mark.skipif(not os.environ.get("CVCL_RAY_TIMING"), reason="timing only: set CVCL_RAY_TIMING=1")
def test_timing_of_the_grid_on_one_node(lab, tmp_path):
    """The same grid (new seeds, so nothing is skipped) on a one-node cluster of its own."""
    port = free_port()
    raytmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    global GRID
    try:
        ray_cmd("stop", "--force", check=False)
        ray_cmd(
            "start",
            "--head",
            "--port",
            str(port),
            "--num-cpus",
            "1",
            "--include-dashboard",
            "false",
            "--temp-dir",
            str(raytmp),
            # the node's own MLflow login, as on the two-node cluster
            extra_env={k: v for k, v in lab["env"].items() if k != "MLFLOW_TRACKING_URI"},
        )
        GRID = ["-S", "method=cvcl,supervised", "-S", "seed=3,4"]
        summary, out = sweep(lab, address=f"127.0.0.1:{port}")
        assert len(summary["done"]) == 4, out[-2000:]
        TIMES["2x2 grid on one node"] = summary["wall"]
    finally:
        ray_cmd("stop", "--force", check=False)
        shutil.rmtree(raytmp, ignore_errors=True)
