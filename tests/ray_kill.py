"""The Ray sweep with one point's first attempt killed mid-run, as when its node dies (for
tests/test_ray_sweep.py; no production code knows of it).

    python -m tests.ray_kill <cvcl sweep-ray arguments>

runs the user's command (:func:`cvcl.commands.sweep_ray.main`) with each Ray task running
:func:`run_point_killing_once` instead of :func:`~cvcl.commands.sweep_ray.run_point`: the same
task, except that when :data:`KILL_ONCE` is ``MARKER:NAME`` and the file MARKER does not exist,
the ``dvc exp run`` of point NAME is killed, with the task's own process, once its MLflow run is
RUNNING (at most :data:`KILL_AFTER_S` seconds in); MARKER records that it happened.

The tasks import this module on the cluster's workers, and read :data:`KILL_ONCE` there: the test
starts the cluster (``ray start``) with the repository root on ``PYTHONPATH`` and that variable
set, and the workers inherit both.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cvcl.commands import sweep_ray

KILL_ONCE = "CVCL_TEST_KILL_ONCE"
KILL_AFTER_S = 300.0
# the real ones, taken before main() swaps the task (in the driver) or a task swaps the runner
_run_point = sweep_ray.run_point
_run_experiment = sweep_ray.run_experiment


def _name_of(cmd: list[str]) -> str:
    """The experiment name of a ``dvc exp run -n NAME ...`` command."""
    return cmd[cmd.index("-n") + 1]


def run_experiment_killed_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """:func:`~cvcl.commands.sweep_ray.run_experiment`, or, for the first attempt of the point
    :data:`KILL_ONCE` names, that attempt killed with this process while its MLflow run is RUNNING."""
    marker, _, target = os.environ.get(KILL_ONCE, "").partition(":")
    if target != _name_of(cmd) or not marker or os.path.exists(marker):
        return _run_experiment(cmd, cwd, env)
    from mlflow import MlflowClient

    Path(marker).write_text(f"{socket.gethostname()}:{os.getpid()}\n")
    child = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    # this task's runs: run_point tags them with its node and process (CVCL_RAY_NODE -> cvcl.node)
    client, query = MlflowClient(env["MLFLOW_TRACKING_URI"]), f"tags.`cvcl.node` = '{env['CVCL_RAY_NODE']}'"
    deadline = time.monotonic() + KILL_AFTER_S
    while child.poll() is None and time.monotonic() < deadline:
        experiments = [e.experiment_id for e in client.search_experiments(max_results=100)]
        runs = client.search_runs(experiments, query) if experiments else []
        # a run caught between its creation and its params could not be told apart from
        # another point's: wait for the params (logged just before training starts)
        if any(r.info.status == "RUNNING" and r.data.params.get("method") for r in runs):
            break
        time.sleep(0.5)
    os.killpg(child.pid, 9)  # a node that dies takes its children with it
    os.kill(os.getpid(), 9)
    raise AssertionError("unreachable")


def run_point_killing_once(point: dict[str, str], origin: str, commit: str) -> dict[str, Any]:
    """The sweep's Ray task, its ``dvc exp run`` through :func:`run_experiment_killed_once`."""
    sweep_ray.run_experiment = run_experiment_killed_once  # in this worker process only
    try:
        return _run_point(point, origin, commit)
    finally:
        sweep_ray.run_experiment = _run_experiment


def main(argv: list[str] | None = None) -> int:
    """``cvcl sweep-ray`` whose tasks are :func:`run_point_killing_once`."""
    from cvcl.entrypoint import run_main

    sweep_ray.run_point = run_point_killing_once  # sweep() makes its Ray task of this name
    return run_main(lambda: sweep_ray.main(argv))


if __name__ == "__main__":
    # Ray ships the task by reference (module and name): it must come from tests.ray_kill, the
    # module the workers import, not from this copy run as __main__
    from tests.ray_kill import main as imported_main

    sys.exit(imported_main(sys.argv[1:]))
