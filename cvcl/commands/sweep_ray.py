"""The ablation grid on a Ray cluster (``cvcl sweep --executor ray --address HEAD``).

One Ray task per grid point. Each task clones the git remote ``origin`` at the baseline commit
into a temporary folder on its node, ``dvc pull``s what the DVC remote holds (the pipeline reruns
what it lacks), runs ``dvc exp run -n NAME -S ...`` with the driver's ``MLFLOW_TRACKING_URI`` (the
team server) and the node's own MLflow login (``~/.mlflow/credentials``, or
``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` in the environment ``ray start`` ran in: Ray shows a
task's runtime environment to everyone who can reach the cluster, so no password goes there),
tags the run with the node it ran on (``cvcl.node``) and pushes the experiment
(``dvc exp push origin NAME``). A task asks for one GPU when the cluster has GPUs, one
CPU otherwise. A task that fails (its node dies, or a command exits non-zero) is retried once,
then reported. Points that already have a FINISHED MLflow run with the same params on the same
commit are skipped, so a rerun of the sweep only does what is missing.
``cvcl sweep-ray --address HEAD -S method=cvcl,supervised -S seed=1,2`` runs a grid of
one's own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cvcl.errors import CvclError

Point = dict[str, str]
# what the driver hands its tasks (Ray's runtime_env, which its state API and dashboard show to
# everyone who can reach the cluster): nothing secret
PASSED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_INSECURE_TLS")
# what each node holds itself (~/.mlflow/credentials, or the environment of its ray start): never
# passed, so that a login cannot pair the driver's username with a node's password either
NODE_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


class SweepError(CvclError):
    """The cluster, the remotes or the baseline are not usable for a sweep."""


# -- the grid --------------------------------------------------------------------------------


def grid(overrides: list[str]) -> list[Point]:
    """The points of ``-S key=v1,v2`` overrides (DVC's comma syntax): their cartesian product."""
    axes = []
    for item in overrides:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise SweepError(f"-S {item!r}: expected key=value[,value...]")
        axes.append([(key, v) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def points_of(commands: list[list[str]]) -> list[Point]:
    """Every point of queued ``dvc exp run --queue -S ...`` commands (:func:`cvcl.commands.sweep.commands`)."""
    points = []
    for cmd in commands:
        points += grid([cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-S"])
    return points


def exp_name(point: Point) -> str:
    """A readable DVC experiment name (a valid git ref) for a point."""
    text = "-".join(f"{k.split('.')[-1]}{v}" for k, v in point.items())
    return "ray-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-")


def _same(logged: str | None, wanted: str) -> bool:
    if logged is None:
        return False
    a, b = yaml.safe_load(logged), yaml.safe_load(wanted)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return str(a) == str(b)


# -- the driver's checks -----------------------------------------------------------------------


def _git(*args: str, cwd: Path | str = ".") -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise SweepError(f"git {' '.join(args)}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout.strip()


def baseline(root: Path = Path(".")) -> tuple[str, str]:
    """(origin's URL, the baseline commit): HEAD, which must be in ``origin``, with a DVC remote."""
    try:
        url = _git("remote", "get-url", "origin", cwd=root)
    except SweepError:
        raise SweepError("no git remote 'origin': the workers clone it (git remote add origin URL)") from None
    commit = _git("rev-parse", "HEAD", cwd=root)
    _git("fetch", "-q", "origin", cwd=root)
    if not _git("branch", "-r", "--contains", commit, cwd=root):
        raise SweepError(f"commit {commit[:8]} is not in origin: git push origin HEAD first (the workers clone it)")
    remotes = subprocess.run(["dvc", "remote", "default"], cwd=root, capture_output=True, text=True)
    if remotes.returncode or not remotes.stdout.strip():
        raise SweepError(
            "no default DVC remote: the workers pull data and push experiments there "
            "(dvc remote add -d NAME URL, committed)"
        )
    return url, commit


def connect(address: str) -> Any:
    """``ray.init(address)``, or a one-line :class:`SweepError` when no cluster answers there."""
    try:
        import ray
    except ImportError:
        raise SweepError("ray is not installed: pip install -e '.[cluster]'") from None
    if address != "auto":  # ray.init waits minutes for a head that is not there
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise SweepError(
                f"--address {address}: no Ray head answers there ({exc}); "
                "start one with ray start --head, or give its HOST:PORT"
            ) from None
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise SweepError(
            f"--address {address}: no Ray cluster there ({first}); start one with ray start --head"
        ) from None
    return ray


def task_options(gpus: float, environ: Mapping[str, str]) -> dict[str, Any]:
    """The options of the sweep's Ray task on a cluster with ``gpus`` GPUs, its runtime
    environment :data:`PASSED_ENV`'s variables of ``environ`` (the driver's): no password, no token."""
    env = {k: environ[k] for k in PASSED_ENV if environ.get(k)}
    uri = env.get("MLFLOW_TRACKING_URI", "")
    try:
        login = urlsplit(uri).password
    except ValueError:  # a malformed URI: MLflow reports it on the workers
        login = None
    if login:
        raise SweepError(
            "MLFLOW_TRACKING_URI holds a password (user:PASSWORD@), which Ray would show to everyone "
            "who can reach the cluster; drop it from the URI and give each node its login "
            "(~/.mlflow/credentials, docs/tracking.md)"
        )
    return {
        "num_gpus": 1 if gpus else 0,
        "num_cpus": 0 if gpus else 1,
        "max_retries": 1,
        "retry_exceptions": True,
        "scheduling_strategy": "SPREAD",
        "runtime_env": {"env_vars": env} if env else None,
    }


# -- one task -----------------------------------------------------------------------------------


def _step(cmd: list[str], cwd: Path, env: dict[str, str], times: dict[str, float], key: str) -> str:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    times[key] = times.get(key, 0.0) + time.monotonic() - started
    if proc.returncode:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {proc.returncode}: {tail[-600:]}")
    return proc.stdout


def run_experiment(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a point's ``dvc exp run`` command ``cmd`` in its clone ``cwd``, output captured."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def run_point(point: Point, origin: str, commit: str) -> dict[str, Any]:
    """One grid point in a fresh clone: clone, pull, ``dvc exp run``, ``dvc exp push``."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "CVCL_RAY_NODE": f"{node} {socket.gethostname()}:{os.getpid()}",
    }
    name = exp_name(point)
    times: dict[str, float] = {}  # seconds per step
    work = Path(tempfile.mkdtemp(prefix="cvcl-sweep-"))
    try:
        repo = work / "repo"
        _step(["git", "clone", "-q", origin, str(repo)], work, env, times, "clone")
        _step(["git", "-c", "advice.detachedHead=false", "checkout", "-q", commit], repo, env, times, "clone")
        started = time.monotonic()  # data the remote lacks is made by the stages in exp run
        subprocess.run(["dvc", "pull", "-q", "--allow-missing"], cwd=repo, env=env, capture_output=True)
        times["pull"] = time.monotonic() - started
        cmd = ["dvc", "exp", "run", "-n", name] + [a for k, v in point.items() for a in ("-S", f"{k}={v}")]
        started = time.monotonic()
        proc = run_experiment(cmd, repo, env)
        times["exp_run"] = time.monotonic() - started
        if proc.returncode:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"dvc exp run {name} exited {proc.returncode}: {tail[-600:]}")
        _step(["dvc", "exp", "push", "-f", "origin", name], repo, env, times, "push")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"name": name, "point": point, "node": node, "host": socket.gethostname(), "times": times}


# -- the driver ------------------------------------------------------------------------------


def _runs_on(commit: str, experiment: str, status: str) -> tuple[Any, list, str]:
    """(client, the runs of ``experiment`` on ``commit`` with ``status``, the experiment's URL)."""
    from mlflow import MlflowClient

    from cvcl.tracking.store import tracking_uri
    from cvcl.tracking.ui import RUNS_VIEW_TAG, runs_url

    uri = tracking_uri()
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return client, [], f"{uri} (experiment {experiment}, created by the first run)"
    url = runs_url(uri, found.experiment_id, RUNS_VIEW_TAG in found.tags) if uri.startswith("http") else uri
    from cvcl.tracking.paging import all_runs

    # every page: a sweep past one page of runs must still see which points are done
    runs = all_runs(client, [found.experiment_id], f"tags.git_commit = '{commit}' and attributes.status = '{status}'")
    return client, runs, url


def _of_point(run: Any, point: Point) -> bool:
    return all(_same(run.data.params.get(k), v) for k, v in point.items())


def finished_points(points: list[Point], commit: str, experiment: str) -> tuple[list[Point], str]:
    """The points with a FINISHED and evaluated run (it has ``dice``) on ``commit`` in MLflow
    experiment ``experiment``, and its URL. A run the train stage finished but whose task died
    before evaluate is not done."""
    from cvcl.tracking.store import check_server, quiet_mlflow_logs, tracking_uri

    quiet_mlflow_logs()
    check_server(tracking_uri())
    _, runs, url = _runs_on(commit, experiment, "FINISHED")
    evaluated = [r for r in runs if "dice" in r.data.metrics]
    return [p for p in points if any(_of_point(r, p) for r in evaluated)], url


def close_killed_attempts(point: Point, commit: str, experiment: str) -> int:
    """Close as KILLED the runs a killed attempt of ``point`` left RUNNING (its retry has
    finished, so nothing of this point still runs); returns how many. A killed process cannot
    close its own run, and on another host the stages' own check cannot see that it died."""
    client, running, _ = _runs_on(commit, experiment, "RUNNING")
    stale = [r for r in running if _of_point(r, point)]
    for r in stale:
        client.set_tag(r.info.run_id, "cvcl.end_reason", "its Ray task was killed; the retry finished the point")
        client.set_terminated(r.info.run_id, "KILLED")
    return len(stale)


def sweep(points: list[Point], address: str, root: Path = Path(".")) -> dict[str, Any]:
    """Run ``points`` on the cluster at ``address``; returns what ran, what failed, what was skipped."""
    from cvcl.params import load_params

    origin, commit = baseline(root)
    experiment = f"cvcl-{load_params(root / 'params.yaml').get('dataset')}"
    skipped, url = finished_points(points, commit, experiment)
    todo = [p for p in points if p not in skipped]
    ray = connect(address)
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(run_point).options(**task_options(gpus, os.environ))
    print(
        f"sweep of {len(points)} points on commit {commit[:8]} at {address} "
        f"({'1 GPU' if gpus else '1 CPU'} a task); {len(skipped)} already FINISHED, skipped",
        flush=True,
    )
    print(f"MLflow: {url}", flush=True)
    if any(os.environ.get(k) for k in NODE_ENV):
        print(
            "note: the tasks log to MLflow with each node's own login (~/.mlflow/credentials or "
            "MLFLOW_TRACKING_USERNAME/PASSWORD where its ray start ran), not this shell's",
            flush=True,
        )
    started = time.monotonic()
    pending = {task.remote(p, origin, commit): p for p in todo}
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        point = pending.pop(ready[0])
        try:
            done.append(ray.get(ready[0]))
            close_killed_attempts(point, commit, experiment)
        except Exception as exc:  # after its retry
            failed.append({"point": point, "error": " ".join(str(exc).split())[-400:]})
            print(f"FAILED {exp_name(point)}: {failed[-1]['error'][-200:]}", flush=True)
        print(
            f"[{time.monotonic() - started:6.0f} s] done {len(done)} / running {len(pending)} / "
            f"failed {len(failed)} / skipped {len(skipped)}",
            flush=True,
        )
    ray.shutdown()
    return {
        "commit": commit,
        "url": url,
        "done": done,
        "failed": failed,
        "skipped": skipped,
        "seconds": time.monotonic() - started,
    }


def report(result: dict[str, Any]) -> int:
    """Print the sweep's outcome and overheads; 1 if a point failed."""
    for r in result["done"]:
        t = r["times"]
        print(
            f"  {r['name']:<40} node {r['node'][:8]}  clone {t.get('clone', 0):5.1f} s  pull "
            f"{t.get('pull', 0):5.1f} s  exp run {t.get('exp_run', 0):6.1f} s  push {t.get('push', 0):5.1f} s"
        )
    print(
        f"{len(result['done'])} done, {len(result['failed'])} failed, {len(result['skipped'])} skipped "
        f"in {result['seconds']:.0f} s; MLflow: {result['url']}"
    )
    print("summary:", json.dumps(result), flush=True)
    return 1 if result["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cvcl sweep-ray", description=__doc__.splitlines()[0])
    ap.add_argument("--address", required=True, help="the Ray head, HOST:PORT (ray start --head), or 'auto'")
    ap.add_argument("-S", "--set", action="append", default=[], metavar="KEY=V1,V2", help="a grid axis")
    args = ap.parse_args(argv)
    return report(sweep(grid(args.set), args.address))
