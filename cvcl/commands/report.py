"""Print the evaluation's metrics table: ``cvcl report [metrics.json]`` (``make repro`` ends with it).

The table is the evaluate stage's (:func:`cvcl.evaluation.report.format_table`): Dice and Jaccard
in %, distances in the evaluation's unit, and the empty and degenerate cases.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cvcl import workspace
from cvcl.errors import DataError
from cvcl.evaluation.report import format_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cvcl report", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "metrics",
        nargs="?",
        type=Path,
        default=workspace.METRICS,
        help=f"the evaluate stage's summary, or cvcl predict --labels' (default {workspace.METRICS})",
    )
    args = ap.parse_args(argv)
    if not args.metrics.is_file():
        raise DataError(args.metrics, "not found; dvc repro writes it (the evaluate stage)")
    try:
        summary = json.loads(args.metrics.read_text())
        print(format_table(summary))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise DataError(args.metrics, "is not a metrics summary (the evaluate stage's metrics.json)") from None
    return 0
