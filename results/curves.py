"""Draw docs/results-la.md's validation curves (validation Dice against iteration, one line per
configuration) from an MLflow experiment, and print where each configuration peaks::

    python results/curves.py --experiment cvcl-la-curves --out docs/img/la-curves.png

The same functions the notebook calls (:mod:`cvcl.validation_curves`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from cvcl import analysis  # noqa: E402
from cvcl.io.atomic import atomic_path  # noqa: E402
from cvcl.validation_curves import CURVE_KNOBS, peaks, plot_validation_curves, validation_curves  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, help="the MLflow experiment (e.g. cvcl-la-curves)")
    parser.add_argument("--tracking-uri", default=None, help="default: MLflow's current one")
    parser.add_argument("--out", type=Path, default=None, help="write the figure here (PNG)")
    args = parser.parse_args(argv)

    runs = analysis.load_runs(args.experiment, args.tracking_uri, tuned=list(CURVE_KNOBS))
    curves = validation_curves(runs, args.tracking_uri)
    if curves.empty:
        print(f"error: experiment {args.experiment!r} has no finished run with val_dice", file=sys.stderr)
        return 2
    print(peaks(curves).round(2).to_markdown(index=False))
    if args.out is not None:
        ax = plot_validation_curves(curves)
        ax.set_title(f"validation Dice on the split.val cases ({args.experiment})", fontsize=9)
        with atomic_path(args.out) as tmp:
            ax.figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
