"""Human-readable rendering of the evaluation summary."""

from __future__ import annotations

import json
from pathlib import Path


def format_table(summary: dict) -> str:
    """A small table: Dice and Jaccard in %, distances in the summary's unit."""
    unit = summary.get("distance_unit", "voxel")
    rows = [("Dice (%)", "dice", 100), ("Jaccard (%)", "jaccard", 100),
            (f"HD95 ({unit})", "hd95", 1), (f"ASD ({unit})", "asd", 1)]
    lines = [f"{'metric':<14}{'mean':>10}{'std':>10}", "-" * 34]
    for title, key, scale in rows:
        lines.append(f"{title:<14}{summary[key] * scale:>10.2f}{summary[key + '_std'] * scale:>10.2f}")
    lines.append(f"{summary['n_cases']} test cases; empty predictions: {summary['n_empty_prediction']}")
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m cvcl.evaluation.report [metrics.json]`
    import sys

    print(format_table(json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "metrics/metrics.json").read_text())))
