"""The paper's ablation grid as queued DVC experiments (``make sweep``).

For the current dataset: labeled in {10%, 20%} of the training cases; cvcl with each term off or
on, (pcl_weight, vcl_weight) in {(0, 0), (1, 0), (0, 1), (1, 1)}; the supervised baseline; 3 seeds.
"On" is the weight in params.yaml (the CPU demo's vcl_weight is below 1, see docs/method.md) or 1
where params.yaml switches the term off; ``--on PCL VCL`` sets it (the paper: ``--on 1 0.6``).
``cvcl sweep`` queues them (``dvc exp run --queue``) and ``--start N`` starts N
workers (``dvc queue start -j N``); ``--dry-run`` only prints the commands.
``--executor ray --address HEAD`` runs the same grid on a Ray cluster instead
(:mod:`cvcl.commands.sweep_ray`).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from cvcl import datasets, workspace
from cvcl.params import load_params
from cvcl.sources.config import source_settings


def training_cases(root: Path = Path(".")) -> int:
    """Number of training cases: from the processed lists when present, else what the dataset's
    params or published lists say (:mod:`cvcl.datasets`)."""
    counted = workspace.training_cases(root / workspace.PROCESSED)
    if counted is not None:
        return counted
    params = load_params(root / "params.yaml")
    dataset = params.get("dataset")
    declared = datasets.get(dataset)
    counted = declared.training_cases(source_settings(params, declared.settings))
    if counted is not None:
        return counted
    raise SystemExit(
        f"error: cannot tell the number of training cases of {dataset!r}; run `dvc repro preprocess` first"
    )


def labeled_counts(n_train: int, fractions=(0.1, 0.2)) -> list[int]:
    """10% and 20% of the training cases, rounded, at least 1 and distinct."""
    return sorted({max(1, round(f * n_train)) for f in fractions})


def on_weights(root: Path = Path(".")) -> tuple[float, float]:
    """(pcl_weight, vcl_weight) of a term switched on: params.yaml's value, or 1 where it is 0."""
    params = load_params(root / "params.yaml")
    pcl = params.get("loss.pcl_weight")
    vcl = params.get("loss.vcl_weight")
    return (pcl or 1.0, vcl or 1.0)


def commands(n_train: int, seeds=(1, 2, 3), on: tuple[float, float] = (1.0, 1.0)) -> list[list[str]]:
    labeled = ",".join(str(n) for n in labeled_counts(n_train))
    seed = ",".join(str(s) for s in seeds)
    pcl, vcl = (f"{w:g}" for w in on)
    return [
        [
            "dvc",
            "exp",
            "run",
            "--queue",
            "-S",
            "method=cvcl",
            "-S",
            f"labeled={labeled}",
            "-S",
            f"loss.pcl_weight=0,{pcl}",
            "-S",
            f"loss.vcl_weight=0,{vcl}",
            "-S",
            f"seed={seed}",
        ],
        ["dvc", "exp", "run", "--queue", "-S", "method=supervised", "-S", f"labeled={labeled}", "-S", f"seed={seed}"],
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cvcl sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=int, metavar="N", default=0, help="start N queue workers afterwards")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument(
        "--on",
        type=float,
        nargs=2,
        metavar=("PCL", "VCL"),
        default=None,
        help="weights of a term switched on (default: params.yaml's, or 1 where it is 0)",
    )
    ap.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: queue on this machine (dvc queue); ray: one task per experiment on a Ray cluster",
    )
    ap.add_argument("--address", default=None, help="the Ray head (HOST:PORT) for --executor ray")
    args = ap.parse_args(argv)
    if args.executor == "ray" and not args.address and not args.dry_run:
        ap.error("--executor ray needs --address HOST:PORT (the head of `ray start --head`)")
    on = tuple(args.on) if args.on else on_weights()
    if min(on) <= 0:
        ap.error(f"--on: expected two positive weights, got {args.on}")
    cmds = commands(training_cases(), on=on)
    if args.executor == "ray":
        from cvcl.commands import sweep_ray

        if args.dry_run:
            for point in sweep_ray.points_of(cmds):
                print(sweep_ray.exp_name(point), " ".join(f"-S {k}={v}" for k, v in point.items()))
            return 0
        return sweep_ray.report(sweep_ray.sweep(sweep_ray.points_of(cmds), args.address))
    if args.start:
        cmds.append(["dvc", "queue", "start", "-j", str(args.start)])
    for cmd in cmds:
        print("$", " ".join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True)
    if args.start and not args.dry_run:
        print(
            "Workers started: `dvc queue status` shows progress, `dvc exp show` the results, "
            "and notebooks/ablations.ipynb compares them."
        )
    return 0
