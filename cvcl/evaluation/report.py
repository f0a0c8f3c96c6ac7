"""Rendering of the evaluation: the per-case CSV and the summary table, units named."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from cvcl.io.atomic import atomic_path

PER_CASE_FIELDS = [
    "case_id",
    "dice",
    "jaccard",
    "hd95",
    "asd",
    "assd",
    "distance_unit",
    "pred_ml",
    "true_ml",
    "pred_fraction",
    "empty",
    "degenerate",
]


def write_per_case(path: str | Path, rows: Iterable[dict]) -> None:
    """``per_case.csv``: one row per case in :data:`PER_CASE_FIELDS` order (atomically).

    Dice and Jaccard are fractions; hd95, asd and assd are in the row's ``distance_unit``;
    undefined distances (one mask empty) are written as ``nan``.
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PER_CASE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def format_table(summary: dict) -> str:
    """A small table: Dice and Jaccard in %, distances in the summary's unit, and the empty cases."""
    unit = summary.get("distance_unit", "voxel")
    rows = [
        ("Dice (%)", "dice", 100),
        ("Jaccard (%)", "jaccard", 100),
        (f"HD95 ({unit})", "hd95", 1),
        (f"ASD ({unit})", "asd", 1),
        (f"ASSD ({unit})", "assd", 1),
    ]
    lines = [f"{'metric':<14}{'mean':>10}{'std':>10}", "-" * 34]
    for title, key, scale in rows:
        lines.append(f"{title:<14}{summary[key] * scale:>10.2f}{summary[key + '_std'] * scale:>10.2f}")
    n, n_dist = summary["n_cases"], summary.get("n_distance_cases", summary["n_cases"])
    lines.append(
        f"{n} test cases; empty predictions: {summary['n_empty_prediction']}, "
        f"empty labels: {summary['n_empty_reference']}"
        + (f" (distances over the other {n_dist})" if n_dist != n else "")
    )
    if summary.get("degenerate"):
        lines.append(
            f"WARNING: degenerate prediction on all {n} test cases (empty, or at least half the volume "
            "foreground): the model has collapsed to one class; see docs/method.md"
        )
    elif summary.get("n_degenerate"):
        lines.append(f"note: {summary['n_degenerate']} of {n} predictions are degenerate (empty or mostly foreground)")
    return "\n".join(lines)
