"""Register the best run of a sweep as a model version: ``cvcl register`` (``make register``).

    cvcl register --experiment cvcl-la --metric val_dice --name la-cvcl \
        --filter "params.method = 'cvcl' and params.labeled = '8'"

picks, among the experiment's FINISHED runs (matching ``--filter``, MLflow's search syntax), the
one with the best ``--metric`` (highest, or lowest for distances) and registers its MLflow model
as the next version of ``--name``; then ``cvcl predict --model models:/<name>/<version>`` uses it.
``val_dice`` (validation cases, ``split.val``) is the metric to choose by: the evaluate stage's
metrics are measured on the test cases, and choosing by them needs ``--allow-test-metric``.
"""

from __future__ import annotations

import argparse

from cvcl.errors import ParamError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cvcl register", description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", required=True, help="MLflow experiment, e.g. cvcl-la")
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--metric", default="val_dice", help="the metric to choose by (default val_dice)")
    p.add_argument("--filter", default="", help="MLflow run filter, e.g. \"params.method = 'cvcl'\"")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--lower-is-better", dest="lower", action="store_true", default=None)
    order.add_argument("--higher-is-better", dest="lower", action="store_false")
    p.add_argument(
        "--allow-test-metric",
        action="store_true",
        help="choose by a metric of the test cases (its test score is then optimistic)",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="register a model logged as a pickle (before models were logged as weights; docs/security.md)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from cvcl.tracking.model import TEST_METRICS, register_best

    # dice, dice_std, dice_last, dice_std_last: all measured on the test cases
    if args.metric.removesuffix("_last").removesuffix("_std") in TEST_METRICS and not args.allow_test_metric:
        raise ParamError(
            "--metric",
            args.metric,
            "a metric not measured on the test cases, e.g. val_dice (train.val_every > 0 with "
            "split.val cases); choosing by a test metric needs --allow-test-metric",
        )
    done = register_best(args.experiment, args.metric, args.name, args.filter, args.lower, args.allow_pickle)
    print(f"registered {done.uri}: run {done.run_name} ({done.run_id}), {args.metric} = {done.value:.4g}")
    print(f"use it: cvcl predict --model {done.uri} --input <scans> --output <folder>")
    return 0
