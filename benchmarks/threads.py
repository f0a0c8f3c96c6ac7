"""Two runs on one thread each against one run on two threads: which uses a 2-core machine better?

    python benchmarks/threads.py [--patch 64 64 32] [--filters 8] [--repeats 6] [--rounds 2]

A queue of experiments (``dvc queue start -j 2`` with ``train.threads=1``, or ``-j 1`` with
``train.threads=2``) is limited by its iterations per second over all runs. Each round times
``benchmarks/train_step.py`` (the trainer's own step, every method, float32, LA-mini's size by
default) once alone on ``--threads`` threads, then as ``--threads`` copies side by side on one
thread each, and reports per method the iterations per second of both layouts and
``ratio_runs_vs_threads`` (the side-by-side copies' summed throughput over the one run's; above 1:
run more runs on fewer threads). Rounds alternate the two layouts; the medians are reported. Run it
on an otherwise idle machine. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

STEP = Path(__file__).resolve().parent / "train_step.py"


def step_seconds(threads: int, copies: int, step_args: Sequence[str]) -> list[dict[str, float]]:
    """``copies`` runs of train_step.py side by side on ``threads`` threads each; each run's
    seconds per iteration by method (float32)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, str(STEP), "--device", "cpu", "--precision", "float32", *step_args]
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(copies)
    ]
    results = []
    for run in runs:
        out, _ = run.communicate()
        if run.returncode != 0:
            raise RuntimeError(f"benchmarks/train_step.py exited {run.returncode}")
        report = json.loads(out.strip().splitlines()[-1])
        # OMP_NUM_THREADS not honoured would time another layout than the one named
        if f", {threads} threads," not in report["machine"]:
            raise RuntimeError(f"train_step.py ran on {report['machine']!r}, not {threads} threads")
        results.append(report["float32"]["seconds_per_iteration"])
    return results


def throughput(runs: list[dict[str, float]]) -> dict[str, float]:
    """Iterations per second summed over runs that ran side by side, by method."""
    return {m: sum(1.0 / r[m] for r in runs) for m in runs[0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 64, 32])
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=6, help="timed steps per method and run")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two layouts")
    ap.add_argument("--threads", type=int, default=2, help="the cores shared: one run on all, or one run per core")
    args = ap.parse_args(argv)
    step_args = ["--patch", *map(str, args.patch), "--filters", str(args.filters), "--repeats", str(args.repeats)]

    one, side_by_side = [], []
    for _ in range(args.rounds):
        one.append(throughput(step_seconds(args.threads, 1, step_args)))
        side_by_side.append(throughput(step_seconds(1, args.threads, step_args)))
    report: dict = {"patch": args.patch, "base_filters": args.filters, "threads": args.threads, "rounds": args.rounds}
    for method in one[0]:
        single = statistics.median(r[method] for r in one)
        several = statistics.median(r[method] for r in side_by_side)
        report[method] = {
            "iterations_per_second_one_run": round(single, 4),
            "iterations_per_second_runs_side_by_side": round(several, 4),
            "ratio_runs_vs_threads": round(several / single, 3),
        }
        print(
            f"{method:<14} one run on {args.threads} threads {single:.3f} it/s, {args.threads} runs on 1 thread "
            f"{several:.3f} it/s in all: ratio_runs_vs_threads {several / single:.2f}",
            flush=True,
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
