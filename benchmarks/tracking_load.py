"""Load on the team MLflow server: concurrent clients logging as trainings do, and what it kept.

    python benchmarks/tracking_load.py [--clients 16] [--threads-per-process 1] [--seconds 60]
        [--artifact-mib 2] [--iterations 1000] [--min-iterations 1] [--step-seconds 0]
        [--workers 2] [--uri http://HOST:PORT [--backend-uri postgresql://...]]

By default it starts its own team server (``cvcl server``: a private
PostgreSQL cluster and ``mlflow server`` with basic auth, :mod:`cvcl.tracking.ephemeral`) in a
temporary folder on a free loopback port with ``--workers`` server processes, adds a user,
and stops and deletes both at the end, also on Ctrl-C or an error. ``--uri`` loads a running
server instead, as ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``; ``--backend-uri`` (its tracking
database) lets the stored rows be counted in SQL, else they are counted over the REST API.

Each client is a queue worker running one training after another (``make sweep``), each
training the train stage's MLflow traffic through the pipeline's own code
(:mod:`cvcl.tracking.run`): ``start_run`` (server check, experiment lookup, abandoned-run
sweep, run with the train stage's tags and params.yaml's params, dataset input), then under
``stage_status`` one ``Run.log_metrics`` per iteration with the keys a CUDA training of the
configured method logs (11 for cvcl), batched by ``Run`` (``BATCH``, ``FLUSH_SECONDS``) and
flushed at every checkpoint as the trainer does, then ``train_seconds``, ``train_log.csv`` and
a ``model.pt`` of ``--artifact-mib`` random bytes through ``Run.log_artifact``, then FINISHED.
A training ends after ``--iterations`` (the next one starts) or at the time bound (after
``--min-iterations``), and closes normally: runs started == finished when nothing failed.
``--step-seconds 0`` steps as fast as the server takes the batches: an upper bound on the
load that trainings (seconds per iteration) put on it.

Clients are processes (``--clients``), or threads within processes (``--threads-per-process``:
64 clients as 4 processes of 16 threads take far less memory than 64 processes). All clients
share one new experiment (``cvcl-load-<time>-<hex>``), as a sweep's trainings do.

Figures: runs started / finished / failed; metric rows logged (``Run.log_metrics``), sent
(in the ``log_batch`` calls the server accepted, counted by the clients) and stored (rows of
table ``metrics`` for the experiment's runs); rows lost = sent - stored; rows unsent = logged -
sent (those of a failed call, which ``Run.flush`` drops); runs left RUNNING; the latency of each
MLflow client call by kind (one HTTP request with MLflow's own retries; ``log_batch_metrics``
is what ``Run.flush`` waits on), p50/p99/max in milliseconds; the failed calls, by message. The
last line is one JSON object with every figure; the exit status is 1 when rows were lost, runs
were left RUNNING or a worker had to be killed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import multiprocessing
import os
import queue
import random
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

# imported before the workers fork, so that they share it (with the client, entities and REST
# store that Run imports lazily): an import costs seconds of CPU
import mlflow  # noqa: F401

from cvcl import methods
from cvcl.entrypoint import run_stage
from cvcl.params import load_params
from cvcl.tracking.ephemeral import ephemeral_server
from cvcl.tracking.run import Run, stage_status, start_run
from cvcl.tracking.store import check_server, quiet_mlflow_logs
from cvcl.training.config import TRACKED

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class Stats:
    """One client's counts, and the seconds each MLflow call of each kind took."""

    def __init__(self) -> None:
        self.started = self.finished = self.failed = self.rows_logged = self.rows_sent = self.errors = 0
        self.messages: dict[str, int] = {}  # the first 5 distinct error messages, with their counts
        self.latency: dict[str, list[float]] = {}
        self.counted: BaseException | None = None  # the last exception already counted as an error

    def timed(self, kind: str, call: Callable[[], T]) -> T:
        """``call()``, its duration (seconds) kept under ``kind`` if it succeeds, else an error."""
        start = time.perf_counter()
        try:
            result = call()
        except Exception as exc:
            self.error(f"{kind}: {type(exc).__name__}: {exc}")
            self.counted = exc
            raise
        self.latency.setdefault(kind, []).append(time.perf_counter() - start)
        return result

    def error(self, message: str, count: int = 1) -> None:
        self.errors += count
        message = " ".join(message.split())[:300]
        if message in self.messages or len(self.messages) < 5:
            self.messages[message] = self.messages.get(message, 0) + count

    def merge(self, other: dict[str, Any]) -> None:
        for name in ("started", "finished", "failed", "rows_logged", "rows_sent"):
            setattr(self, name, getattr(self, name) + other[name])
        for message, count in other["messages"].items():
            self.error(message, count)
        self.errors += other["errors"] - sum(other["messages"].values())  # those past the first 5 kinds
        for kind, seconds in other["latency"].items():
            self.latency.setdefault(kind, []).extend(seconds)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "counted"}


class TimedClient:
    """The run's MLflow client with every call timed by kind, and the metric rows of each
    successful ``log_batch`` counted as sent (a retry that succeeds counts once)."""

    def __init__(self, client: Any, stats: Stats) -> None:
        self._client, self._stats = client, stats

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            metrics = kwargs.get("metrics") or ()
            kind = name if name != "log_batch" else "log_batch_metrics" if metrics else "log_batch_other"
            result = self._stats.timed(kind, lambda: attr(*args, **kwargs))
            self._stats.rows_sent += len(metrics) if name == "log_batch" else 0
            return result

        return call


def training_shape(args: argparse.Namespace) -> dict[str, Any]:
    """What each training logs: the train stage's params and tags, and the metric keys per
    iteration of a CUDA training (float16 AMP: ``amp_scale``) of params.yaml's method."""
    params = load_params(ROOT / "params.yaml")
    flat = params.flat(TRACKED)
    method = params.get("method")
    active = {"loss_sup", *(t.name for t in methods.get(method).active_terms(flat))}
    every_term = {t.name for t in methods.all_terms()}
    keys = [c for c in methods.log_columns() if c != "step" and (c not in every_term or c in active)]
    return {
        "dataset": params.get("dataset"),
        "params": flat,
        "keys": keys,
        "tags": {"dataset": params.get("dataset"), "method": method, "split_protocol": "protocol"},
        "checkpoint_every": int(params.get("train.checkpoint_every") or 0),
        "iterations": args.iterations,
        "min_iterations": min(args.min_iterations, args.iterations),
        "step_seconds": args.step_seconds,
        "artifact_bytes": int(args.artifact_mib * 2**20),
    }


def one_training(
    client_no: int,
    k: int,
    shape: dict[str, Any],
    deadline: float,
    stop: Any,
    stats: Stats,
    folder: Path,
    rng: random.Random,
) -> None:
    """One training's MLflow traffic (module docstring), its steps ending at ``deadline``
    (seconds since the epoch) or when ``stop`` is set."""
    name = f"load-c{client_no:03d}-r{k}"
    tags = {**shape["tags"], "cvcl.load_client": str(client_no)}
    run: Run = stats.timed(
        "start_run",
        lambda: start_run(shape["dataset"], name, shape["params"], tags, dataset_version=f"{client_no:032x}.dir"),
    )
    stats.started += 1
    run.client = TimedClient(run.client, stats)  # the run's later calls are the ones timed by kind
    started, rows, step = time.perf_counter(), [], 0
    try:
        with stage_status(run):
            # --min-iterations at least (one by default): every run holds per-step curves
            while step < shape["iterations"] and (
                step < shape["min_iterations"] or (time.time() < deadline and not stop.is_set())
            ):
                values = {key: rng.random() for key in shape["keys"]}
                stats.rows_logged += len(values)  # before: a failed flush in it may still send them later
                run.log_metrics(values, step)
                rows.append({"step": step, **values})
                step += 1
                if shape["checkpoint_every"] and step % shape["checkpoint_every"] == 0:
                    run.flush()  # the trainer's checkpoint flushes the run (extra_state)
                if shape["step_seconds"]:
                    time.sleep(shape["step_seconds"])
            seconds = time.perf_counter() - started
            stats.rows_logged += 2
            run.log_metrics({"train_seconds": seconds, "seconds_per_iteration": seconds / max(step, 1)})
            with open(folder / "train_log.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["step", *shape["keys"]])
                writer.writeheader()
                writer.writerows(rows)
            run.log_artifact(folder / "train_log.csv")
            run.log_artifact(folder / "model.pt")
    except Exception:
        stats.failed += 1
        raise
    stats.finished += 1


def client_loop(client_no: int, shape: dict[str, Any], deadline: float, stop: Any, stats: Stats) -> None:
    """Trainings one after another until ``deadline`` (seconds since the epoch) or ``stop``."""
    folder = Path(tempfile.mkdtemp(prefix=f"cvcl-load-{client_no}-"))
    (folder / "model.pt").write_bytes(os.urandom(shape["artifact_bytes"]))
    rng = random.Random(client_no)
    try:
        k = 0
        while time.time() < deadline and not stop.is_set():
            try:
                one_training(client_no, k, shape, deadline, stop, stats, folder, rng)
            except Exception as exc:  # noqa: BLE001  (any failure ends the training, not the client)
                if exc is not stats.counted:  # not from a timed call: counted here
                    stats.error(f"training: {type(exc).__name__}: {exc}")
                time.sleep(1.0)  # a server that refuses must not make the client spin
            k += 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def worker(first: int, count: int, shape: dict[str, Any], go: Any, stop: Any, deadline: Any, results: Any) -> None:
    """A client process: ``count`` client threads numbered from ``first``; its merged Stats
    go to ``results`` when they end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent answers Ctrl-C: it sets ``stop``
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a worker the parent gives up on just ends
    # one connection per thread, as one training process has: MLflow's pool keeps 10 by default
    os.environ["MLFLOW_HTTP_POOL_MAXSIZE"] = str(max(10, count))
    results.put(("ready", os.getpid()))
    go.wait()
    stats = [Stats() for _ in range(count)]
    threads = [
        threading.Thread(target=client_loop, args=(first + i, shape, deadline.value, stop, stats[i]), daemon=True)
        for i in range(count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = Stats()
    for s in stats:
        total.merge(s.as_dict())
    results.put(("done", total.as_dict()))


def _mem_gib(field: str) -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 2**20


def _trainings() -> int:
    """How many train stages run on this machine now (they share its CPUs with the benchmark)."""
    found = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            found += b"stages.train" in cmdline.read_bytes()
    return found


def run_load(args: argparse.Namespace, shape: dict[str, Any]) -> tuple[Stats, dict[str, Any]]:
    """Start the client processes, let them log for ``args.seconds`` seconds, collect their Stats."""
    ctx = multiprocessing.get_context("fork")  # the parent's imports shared, not repeated per process
    go, stop, deadline, results = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0), ctx.Queue()
    sizes = [min(args.threads_per_process, args.clients - i) for i in range(0, args.clients, args.threads_per_process)]
    procs = [
        ctx.Process(target=worker, args=(sum(sizes[:p]), n, shape, go, stop, deadline, results))
        for p, n in enumerate(sizes)
    ]
    total, info = Stats(), {"workers_killed": 0, "mem_available_min_gib": _mem_gib("MemAvailable")}
    try:
        for p in procs:
            p.start()
        for _ in procs:
            results.get(timeout=300)  # each process ready (forked, signals set)
        deadline.value = time.time() + args.seconds
        start = time.perf_counter()
        go.set()
        print(
            f"load: {args.clients} clients ({len(procs)} processes x up to {args.threads_per_process} threads) "
            f"for {args.seconds:.0f} s",
            flush=True,
        )
        done, last_note = 0, 0.0
        while done < len(procs) and time.perf_counter() < start + args.seconds + args.grace_seconds:
            try:
                _, payload = results.get(timeout=2)
                total.merge(payload)
                done += 1
            except queue.Empty:
                pass
            info["mem_available_min_gib"] = min(info["mem_available_min_gib"], _mem_gib("MemAvailable"))
            elapsed = time.perf_counter() - start
            if elapsed - last_note >= 10:
                last_note = elapsed
                print(
                    f"  {elapsed:5.0f} s: {done}/{len(procs)} processes done, "
                    f"{info['mem_available_min_gib']:.1f} GiB memory available at least",
                    flush=True,
                )
        info["load_wall_s"] = time.perf_counter() - start
        info["workers_killed"] = len(procs) - done
    except KeyboardInterrupt:
        stop.set()  # the clients end their runs (FINISHED) before the server goes
        go.set()  # processes still waiting to start: they end at once
        for p in procs:
            p.join(timeout=60)
        raise
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
    return total, info


def count_stored(experiment: str, db_uri: str | None) -> dict[str, Any]:
    """Metric rows and runs by status of ``experiment`` in the tracking database (``db_uri``,
    SQLAlchemy), or over the REST API of MLFLOW_TRACKING_URI where it is None."""
    if db_uri:
        from sqlalchemy import create_engine, text

        engine = create_engine(db_uri)
        try:
            with engine.connect() as con:
                exp = con.execute(
                    text("SELECT experiment_id FROM experiments WHERE name = :n"), {"n": experiment}
                ).scalar()
                rows = con.execute(
                    text("SELECT count(*) FROM metrics JOIN runs USING (run_uuid) WHERE runs.experiment_id = :e"),
                    {"e": exp},
                ).scalar()
                status = dict(
                    con.execute(
                        text("SELECT status, count(*) FROM runs WHERE experiment_id = :e GROUP BY status"), {"e": exp}
                    ).all()
                )
        finally:
            engine.dispose()
        return {"rows_stored": int(rows or 0), "runs_by_status": status, "stored_counted_in": "postgresql"}
    from mlflow import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=50000) if found else []
    status: dict[str, int] = {}
    rows = 0  # each run's history of each key: get_metric_history pages through it
    for r in runs:
        status[r.info.status] = status.get(r.info.status, 0) + 1
        rows += sum(len(client.get_metric_history(r.info.run_id, key)) for key in r.data.metrics)
    return {"rows_stored": rows, "runs_by_status": status, "stored_counted_in": "rest"}


def percentiles(seconds: list[float]) -> dict[str, float | int]:
    """Calls, and p50/p99/max in milliseconds (nearest rank)."""
    ranked = sorted(seconds)

    def at(q: float) -> float:
        return round(1000 * ranked[max(0, math.ceil(q * len(ranked)) - 1)], 1)

    return {"calls": len(ranked), "p50": at(0.50), "p99": at(0.99), "max": at(1.0)}


def report(
    args: argparse.Namespace,
    shape: dict[str, Any],
    server: str,
    total: Stats,
    info: dict[str, Any],
    stored: dict[str, Any],
    experiment: str,
    load_before: float,
    wall_s: float,
) -> dict[str, Any]:
    """Every figure, printed as a summary; returned for the JSON line."""
    running = stored["runs_by_status"].get("RUNNING", 0)
    out = {
        "server": server,
        "clients": args.clients,
        "threads_per_process": args.threads_per_process,
        "processes": math.ceil(args.clients / args.threads_per_process),
        "seconds": args.seconds,
        "iterations_per_run": args.iterations,
        "min_iterations": args.min_iterations,
        "step_seconds": args.step_seconds,
        "metric_keys_per_step": len(shape["keys"]),
        "params_per_run": len(shape["params"]),
        "artifact_mib": args.artifact_mib,
        "runs_started": total.started,
        "runs_finished": total.finished,
        "runs_failed": total.failed,
        "runs_by_status": stored["runs_by_status"],
        "runs_running": running,
        "rows_logged": total.rows_logged,
        "rows_sent": total.rows_sent,
        "rows_stored": stored["rows_stored"],
        "rows_unsent": total.rows_logged - total.rows_sent,
        "rows_lost": total.rows_sent - stored["rows_stored"],
        "stored_counted_in": stored["stored_counted_in"],
        "rows_stored_per_s": round(stored["rows_stored"] / max(info["load_wall_s"], 1e-9), 1),
        "latency_ms": {k: percentiles(v) for k, v in sorted(total.latency.items())},
        "errors": total.errors,
        "error_messages": total.messages,
        "workers_killed": info["workers_killed"],
        "load_wall_s": round(info["load_wall_s"], 1),
        "wall_s": round(wall_s, 1),
        "experiment": experiment,
        "machine": {
            "nproc": os.cpu_count(),
            "mem_total_gib": round(_mem_gib("MemTotal"), 1),
            "mem_available_min_gib": round(info["mem_available_min_gib"], 1),
            "loadavg_1min_before": round(load_before, 2),
            "trainings_beside": _trainings(),
        },
    }
    print(
        f"\n{out['clients']} clients ({out['processes']} processes x {args.threads_per_process} threads) "
        f"on {server}, {args.seconds:.0f} s bound, load phase {out['load_wall_s']} s, all {out['wall_s']} s"
    )
    print(
        f"runs: {total.started} started, {total.finished} finished, {total.failed} failed; "
        f"in the store by status {stored['runs_by_status']}"
    )
    print(
        f"metric rows: {total.rows_logged} logged by the trainings, {total.rows_sent} sent (accepted), "
        f"{stored['rows_stored']} stored ({stored['stored_counted_in']}): {out['rows_lost']} lost, "
        f"{out['rows_unsent']} unsent (dropped with a failed call); {out['rows_stored_per_s']} rows/s stored"
    )
    print(f"{'call':<20} {'calls':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for kind, p in out["latency_ms"].items():
        print(f"{kind:<20} {p['calls']:>7} {p['p50']:>9} {p['p99']:>9} {p['max']:>9}")
    print(f"errors: {total.errors}" + "".join(f"\n  {n} x {m}" for m, n in total.messages.items()))
    print(
        f"machine: {os.cpu_count()} CPUs, {out['machine']['mem_total_gib']} GiB (at least "
        f"{out['machine']['mem_available_min_gib']} GiB available), load average {load_before:.2f} before, "
        f"{out['machine']['trainings_beside']} trainings beside",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uri", help="a running server, as MLFLOW_TRACKING_USERNAME/PASSWORD (default: one's own)")
    ap.add_argument("--backend-uri", help="with --uri: its tracking database (SQLAlchemy URI) to count rows in")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    ap.add_argument("--threads-per-process", type=int, default=1, help="clients per process (default: 1)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long the clients step (default: 60)")
    ap.add_argument("--artifact-mib", type=float, default=2.0, help="model.pt per run, MiB (default: 2)")
    ap.add_argument("--iterations", type=int, default=1000, help="of a training (default: 1000, params.yaml's)")
    ap.add_argument("--min-iterations", type=int, default=1, help="of a training past the bound (default: 1)")
    ap.add_argument("--step-seconds", type=float, default=0.0, help="pause per iteration (default: 0)")
    ap.add_argument("--workers", type=int, default=2, help="processes of one's own server (default: 2)")
    ap.add_argument(
        "--grace-seconds",
        type=float,
        default=300.0,
        help="for the runs to close after the bound (default: 300); then workers are killed",
    )
    args = ap.parse_args()
    if min(args.clients, args.threads_per_process, args.iterations, args.min_iterations) < 1 or args.seconds <= 0:
        ap.error("--clients, --threads-per-process, --iterations, --min-iterations and --seconds must be positive")
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    quiet_mlflow_logs()
    shape = training_shape(args)
    experiment = f"cvcl-load-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    os.environ["CVCL_EXPERIMENT"] = experiment  # start_run's experiment for every client
    if args.uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.uri
        check_server(args.uri)  # a refused login in one line, before any client starts
        total, info = run_load(args, shape)
        stored, server = count_stored(experiment, args.backend_uri), args.uri
    else:
        user, password = "loadtest", secrets.token_urlsafe(16)
        print(f"starting a team server (PostgreSQL, mlflow server --workers {args.workers})", flush=True)
        with ephemeral_server(secrets.token_urlsafe(16), user, password, workers=args.workers) as team:
            print(f"server up on {team.uri} after {time.perf_counter() - began:.0f} s", flush=True)
            os.environ.update(team.env())
            total, info = run_load(args, shape)
            stored = count_stored(experiment, team.cluster().uri("mlflow"))
            server = f"own ({args.workers} workers)"
    out = report(args, shape, server, total, info, stored, experiment, load_before, time.perf_counter() - began)
    print(json.dumps(out))
    if out["rows_lost"] > 0 or out["runs_running"] > 0 or out["workers_killed"] > 0:
        raise SystemExit(1)


if __name__ == "__main__":
    run_stage(main)
