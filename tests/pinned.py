"""What users see from the pipeline at tiny params, for every method: the record that
``tests/test_pinned_outputs.py`` compares against ``tests/data/pinned_outputs.json``.

A refactor must leave this record unchanged (same params, same seed: same manifest, split,
per-iteration loss terms, metrics and predictions). When a change is *meant* to alter
behaviour, regenerate the record and say why in the commit:

    python -m tests.pinned --write

Floating-point sums differ between CPU families in the last bits, and over a few hundred steps
those bits grow past the comparison's tolerance: the shipped record is made on the CI's CPU
(AMD EPYC). On another machine, compare a refactor with the code before it instead: write that
code's record to a file of your own (``CVCL_PINNED=/tmp/base.json python -m tests.pinned --write``
in a checkout of it) and run the test with the same ``CVCL_PINNED``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import ROOT
from tests.helpers import run, set_params, stage_workspace

PINNED = Path(os.environ.get("CVCL_PINNED", ROOT / "tests" / "data" / "pinned_outputs.json"))
METHODS = ("supervised", "mean_teacher", "ua_mt", "cvcl")


def _floats(row: dict) -> dict:
    return {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}


def produce(tmp: Path) -> dict:
    """Run the stages in a throw-away workspace under ``tmp``; returns the record."""
    ws = stage_workspace(tmp / "ws")
    set_params(ws, {"train": {"threads": 1}})
    for stage in ("download", "preprocess", "split"):
        run(["python", "-m", f"stages.{stage}"], ws)
    with open(ws / "data" / "processed" / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    record = {
        "manifest": manifest,
        "split": json.loads((ws / "data" / "splits" / "split.json").read_text()),
        "methods": {},
    }
    for method in METHODS:
        set_params(ws, {"method": method})
        for stage in ("train", "infer", "evaluate"):
            run(["python", "-m", f"stages.{stage}"], ws)
        with open(ws / "models" / "train_log.csv", newline="") as f:
            reader = csv.DictReader(f)
            log = [_floats(r) for r in reader]
            columns = list(reader.fieldnames or [])
        metrics = json.loads((ws / "metrics" / "metrics.json").read_text())
        foreground = {
            p.name: int(np.asarray(nib.load(p).dataobj).sum()) for p in sorted((ws / "predictions").glob("*.nii.gz"))
        }
        record["methods"][method] = {
            "columns": columns,
            "train_log": log,
            "metrics": metrics,
            "foreground_voxels": foreground,
        }
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"write the record to {PINNED} (CVCL_PINNED overrides)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        record = produce(Path(tmp))
    text = json.dumps(record, indent=1, sort_keys=True)
    if args.write:
        PINNED.parent.mkdir(exist_ok=True)
        PINNED.write_text(text + "\n")
        print(f"wrote {PINNED}")
    else:
        print(text)


if __name__ == "__main__":
    main()
