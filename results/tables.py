"""Print the markdown tables of docs/results-la.md from an MLflow experiment.

The summary (mean ± std over seeds per configuration and labeled count), each run's Dice and
HD95, and the paired differences with their 95% intervals: the main chain (supervised -> mean
teacher -> CVCL) in Dice and HD95, and every other configuration against the chain's members and
CVCL in Dice. The same functions the notebook calls (:mod:`cvcl.analysis`)::

    python results/tables.py --experiment cvcl-la --tuned loss.consistency train.lr
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from cvcl import analysis


def pairs_to_compare(runs: pd.DataFrame) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(the chain's pairs, every other config against the chain's configs and CVCL, and CVCL
    against the chain's first member)."""
    chain = analysis.chain_pairs(runs)
    members = {c for pair in chain for c in pair}
    cvcl = analysis.full_cvcl_config(runs)
    others = sorted(set(runs["config"]) - members)
    extra = [(other, base) for other in others for base in sorted(members) if base != cvcl]
    extra += [(cvcl, other) for other in others if cvcl is not None]
    extra += [
        (cvcl, base) for base in sorted(members) if cvcl is not None and base != cvcl and (cvcl, base) not in chain
    ]
    return chain, extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, help="the MLflow experiment (e.g. cvcl-la)")
    parser.add_argument("--tracking-uri", default=None, help="default: MLflow's current one")
    parser.add_argument("--tuned", nargs="*", default=[], help="params a family tuned (named in the config)")
    parser.add_argument(
        "--iteration",
        choices=analysis.ITERATIONS,
        default="chosen",
        help="the model each run chose (default; a best_val run's validation-selected one) or its last iteration's",
    )
    args = parser.parse_args(argv)

    runs = analysis.load_runs(args.experiment, args.tracking_uri, tuned=args.tuned, iteration=args.iteration)
    if runs.empty:
        print(f"error: experiment {args.experiment!r} has no finished runs", file=sys.stderr)
        return 2
    print(analysis.formatted_table(analysis.summary_table(runs)).to_markdown(index=False))
    print()
    per_run = runs.sort_values(["labeled", "config", "seed"])
    print(
        "Per run (labeled, seed: Dice %, HD95): "
        + "; ".join(
            f"{r.config} l{r.labeled} s{r.seed}: {100 * r.dice:.2f}, {r.hd95:.2f}" for r in per_run.itertuples()
        )
        + "."
    )
    print()
    per_case = analysis.load_per_case(runs, args.tracking_uri, iteration=args.iteration)
    chain, extra = pairs_to_compare(runs)
    intervals = pd.concat(
        [analysis.paired_intervals(runs, per_case, metric=metric, pairs=chain) for metric in ("dice", "hd95")]
        + [analysis.paired_intervals(runs, per_case, metric="dice", pairs=extra)],
        ignore_index=True,
    )
    print(analysis.format_intervals(intervals).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
