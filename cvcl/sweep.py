"""The paper's ablation grid as queued DVC experiments (``make sweep``).

For the current dataset: labeled in {10%, 20%} of the training cases; cvcl with
(pcl_weight, vcl_weight) in {(0, 0), (1, 0), (0, 1), (1, 1)}; the supervised baseline; 3 seeds.
``python -m cvcl.sweep`` queues them (``dvc exp run --queue``) and ``--start N`` starts N
workers (``dvc queue start -j N``); ``--dry-run`` only prints the commands.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from cvcl.params import load_params

# training cases of the real datasets' fixed lists (method.md)
KNOWN_TRAINING_CASES = {"la": 80, "la-nrrd": 80, "brats2019": 250, "synthetic-brats": None}


def training_cases(root: Path = Path(".")) -> int:
    """Number of training cases: from the processed lists when present, else from params."""
    listing = root / "data" / "processed" / "train.list"
    if listing.is_file():
        return len([line for line in listing.read_text().splitlines() if line.strip()])
    params = load_params(root / "params.yaml")
    dataset = params.str("dataset")
    if dataset.startswith("synthetic"):
        return params.int("download.synthetic.n_train", min=1)
    if KNOWN_TRAINING_CASES.get(dataset):
        return KNOWN_TRAINING_CASES[dataset]
    raise SystemExit(f"error: cannot tell the number of training cases of {dataset!r}; run `dvc repro preprocess` first")


def labeled_counts(n_train: int, fractions=(0.1, 0.2)) -> list[int]:
    """10% and 20% of the training cases, rounded, at least 1 and distinct."""
    return sorted({max(1, round(f * n_train)) for f in fractions})


def commands(n_train: int, seeds=(1, 2, 3)) -> list[list[str]]:
    labeled = ",".join(str(n) for n in labeled_counts(n_train))
    seed = ",".join(str(s) for s in seeds)
    return [
        ["dvc", "exp", "run", "--queue", "-S", "method=cvcl", "-S", f"labeled={labeled}",
         "-S", "loss.pcl_weight=0,1", "-S", "loss.vcl_weight=0,1", "-S", f"seed={seed}"],
        ["dvc", "exp", "run", "--queue", "-S", "method=supervised", "-S", f"labeled={labeled}", "-S", f"seed={seed}"],
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cvcl.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=int, metavar="N", default=0, help="start N queue workers afterwards")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    cmds = commands(training_cases())
    if args.start:
        cmds.append(["dvc", "queue", "start", "-j", str(args.start)])
    for cmd in cmds:
        print("$", " ".join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True)
    if args.start and not args.dry_run:
        print("Workers started: `dvc queue status` shows progress, `dvc exp show` the results, "
              "and notebooks/ablations.ipynb compares them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
