"""What users see from the pipeline at tiny params, for every method: the record that
``tests/test_pinned_outputs.py`` compares against ``tests/data/pinned_outputs.json``.

A refactor must leave this record unchanged (same params, same seed: same manifest, split,
per-iteration loss terms, metrics and predictions). When a change is *meant* to alter
behaviour, regenerate the record and say why in the commit:

    python -m tests.pinned --write

The stages run through ``tests/portable.py``: PyTorch's CPU kernels sum in an order that depends
on the CPU's instruction set (AVX2 on one machine, AVX-512 on the next), and over a few training
steps those last bits grow past the comparison's tolerance, so the record is made with portable
numerics that give the same bits on any x86-64 CPU (slower, which the tiny params allow).
``CVCL_PINNED=/tmp/base.json`` reads and writes another file, to compare two checkouts.
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
from tests.portable import ENV as PORTABLE_ENV

PINNED = Path(os.environ.get("CVCL_PINNED", ROOT / "tests" / "data" / "pinned_outputs.json"))
METHODS = ("supervised", "mean_teacher", "ua_mt", "cvcl")


def _floats(row: dict) -> dict:
    return {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}


def produce(tmp: Path) -> dict:
    """Run the stages in a throw-away workspace under ``tmp``; returns the record."""
    ws = stage_workspace(tmp / "ws")
    set_params(ws, {"train": {"threads": 1}})

    def stage(name: str) -> None:
        run(["python", str(ROOT / "tests" / "portable.py"), f"stages.{name}"], ws, extra_env=PORTABLE_ENV)

    for name in ("download", "preprocess", "split"):
        stage(name)
    with open(ws / "data" / "processed" / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    record = {
        "manifest": manifest,
        "split": json.loads((ws / "data" / "splits" / "split.json").read_text()),
        "methods": {},
    }
    for method in METHODS:
        set_params(ws, {"method": method})
        for name in ("train", "infer", "evaluate"):
            stage(name)
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
