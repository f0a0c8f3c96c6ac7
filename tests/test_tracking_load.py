"""benchmarks/tracking_load.py as a user runs it, at a small load: it starts its own team server
(PostgreSQL and mlflow server with basic auth), logs from concurrent clients (processes, and
threads within one) through the pipeline's Run, and reports every row stored and every run
closed. Its latencies are measured, not asserted: they depend on the machine's load."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.team_server import _pg_user

pytestmark = pytest.mark.slow


def test_every_run_closes_and_every_metric_row_sent_is_stored():
    _pg_user()  # skips, saying why, where PostgreSQL cannot be started
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CVCL_"))}
    # 3 clients: one process of 2 threads and one of 1; trainings of exactly 100 iterations, past
    # the time bound too (a loaded machine may not start one within it), so that each run's rows
    # go out in batches of every kind: Run's full batch and remainder, a checkpoint's flush, the last
    cmd = [
        sys.executable,
        "benchmarks/tracking_load.py",
        "--clients",
        "3",
        "--threads-per-process",
        "2",
        "--seconds",
        "8",
        "--iterations",
        "100",
        "--min-iterations",
        "100",
        "--artifact-mib",
        "0.1",
        "--workers",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["clients"], report["processes"]) == (3, 2)
    assert report["runs_started"] == report["runs_finished"] >= 3  # each client one run at least
    assert report["runs_failed"] == 0 and report["errors"] == 0, report["error_messages"]
    assert report["runs_by_status"] == {"FINISHED": report["runs_finished"]}
    assert report["runs_running"] == 0
    assert report["rows_stored"] == report["rows_sent"] == report["rows_logged"] > 0
    assert report["rows_lost"] == report["rows_unsent"] == 0
    # every run holds its curves (100 iterations of each key) and train_seconds, seconds_per_iteration
    assert report["rows_sent"] == report["runs_finished"] * (100 * report["metric_keys_per_step"] + 2)
    assert report["stored_counted_in"] == "postgresql"
    batches = report["latency_ms"]["log_batch_metrics"]
    assert batches["calls"] >= 3 * report["runs_finished"] and "p50" in batches and "p99" in batches
    assert report["workers_killed"] == 0
