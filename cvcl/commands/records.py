"""Run records: runs as JSON files, into and out of the MLflow store.

    cvcl records import <folder or record files> [--experiment NAME]     (make import-runs)
    cvcl records export --experiment NAME --out FOLDER [--filter ...]

``import`` logs each record (:mod:`cvcl.tracking.records`, e.g. ``benchmarks/gpu_check.py``'s) as
one run of the store ``MLFLOW_TRACKING_URI`` names, else the repository's ``mlflow.db``; a record
already there is skipped. ``export`` writes an experiment's finished runs as records.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cvcl.tracking.records import DEFAULT_EXPERIMENT


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cvcl records", description=__doc__.split("\n\n")[0])
    commands = ap.add_subparsers(dest="command", required=True, metavar="{import,export}")
    imp = commands.add_parser(
        "import",
        help="log run records into the MLflow store (MLFLOW_TRACKING_URI, "
        "else the repository's mlflow.db); records already there are skipped",
    )
    imp.add_argument("paths", nargs="+", help="record files, or folders of them (gpu_check's --out or its runs/)")
    imp.add_argument(
        "--experiment",
        help=f"the experiment to log into (default: each record's own, {DEFAULT_EXPERIMENT} for gpu_check)",
    )
    exp = commands.add_parser("export", help="write the finished runs of an experiment as run records")
    exp.add_argument("--experiment", required=True, help="the experiment whose finished runs to write")
    exp.add_argument("--out", required=True, type=Path, help="the folder to write <run name>-<run id>.json into")
    exp.add_argument("--filter", default="", help="an MLflow search filter, e.g. \"params.seed IN ('1', '2')\"")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # imported here: --help and argument errors answer without loading MLflow
    from cvcl.tracking import record_store

    if args.command == "export":
        written = record_store.export_records(args.experiment, args.out, args.filter)
        print(f"{len(written)} run records in {args.out}")
        return 0
    results = record_store.import_records(args.paths, args.experiment)
    created = sum(r.created for r in results)
    print(f"{created} imported, {len(results) - created} skipped")
    return 0
