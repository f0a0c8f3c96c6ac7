"""Segment scans with a trained model: ``cvcl predict`` (``make predict``).

    cvcl predict --model runs:/<run_id>/model --input scans/ --output segs/
    cvcl predict --model models/model.pt --input case.nii.gz --output segs/ --labels refs/

``--model`` is a checkpoint (``models/model.pt``), ``runs:/<run_id>/model`` or
``models:/<name>/<version>`` (the tracking store is ``MLFLOW_TRACKING_URI``, else the project's
``mlflow.db``). Scans get the preprocessing the model was trained with and the sliding-window
settings it was evaluated with (each flag below overrides one); predictions land in each scan's
own grid and format (see :mod:`cvcl.inference.scans`). With ``--labels``, the predictions are
scored with the project's metrics into ``<output>/metrics.json`` and ``per_case.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cvcl.errors import DataError, ParamError


def _triple(text: str) -> list[int]:
    values = [v for v in text.replace(",", " ").split() if v]
    if len(values) != 3 or not all(v.isdigit() and int(v) > 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected three positive integers, e.g. 16,16,8")
    return [int(v) for v in values]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cvcl predict", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="models/model.pt, runs:/<run_id>/model or models:/<name>/<version>")
    p.add_argument("--input", required=True, type=Path, help="a .nii.gz/.nii/.nrrd/.h5 scan or a folder of them")
    p.add_argument("--output", required=True, type=Path, help="folder for the predictions (created if needed)")
    p.add_argument(
        "--labels", type=Path, help="folder of reference labels <name>.nii.gz or .nrrd: score the predictions"
    )
    p.add_argument("--distance-unit", choices=("mm", "voxel"), default="mm", help="unit of HD95/ASD (default mm)")
    p.add_argument("--weights", choices=("student", "teacher"), help="checkpoint only: which network (default student)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load an MLflow model logged as a pickle (before models were logged as weights): it runs "
        "whatever code the pickle holds, so only for a store whose writers you trust (docs/security.md)",
    )
    p.add_argument(
        "--resample",
        type=float,
        nargs="+",
        metavar="MM",
        help="target spacing in mm, one value or three (default: the model's recipe; for "
        "checkpoints that predate recording it, give preprocess.resample here)",
    )
    w = p.add_argument_group("sliding window (default: the model's own settings)")
    w.add_argument("--patch", type=_triple, help="window size in voxels, e.g. 112,112,80")
    w.add_argument("--stride", type=_triple, help="window step in voxels, e.g. 18,18,4")
    w.add_argument("--batch-size", type=int, help="windows per forward pass")
    w.add_argument("--gaussian", action=argparse.BooleanOptionalAction, default=None, help="Gaussian weighting")
    w.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None, help="average over X/Y flips")
    w.add_argument(
        "--largest-component",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep the largest connected component",
    )
    w.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="float16 autocast (CUDA only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # imported here: `--help` and argument errors answer without loading torch and MLflow
    from cvcl.evaluation.report import format_table, write_per_case
    from cvcl.evaluation.scans import find_references, segment_scans
    from cvcl.evaluation.summary import summarize
    from cvcl.inference.scans import find_scans
    from cvcl.inference.segment import inference_config, load_trained
    from cvcl.io.atomic import write_json

    if args.batch_size is not None and args.batch_size < 1:
        raise ParamError("--batch-size", args.batch_size, "a positive number of windows")
    if args.labels is not None and not args.labels.is_dir():
        raise DataError(args.labels, "not found; --labels expects a folder of <name>.nii.gz or .nrrd labels")
    trained = load_trained(args.model, args.weights, allow_pickle=args.allow_pickle)
    if args.resample is not None:
        if len(args.resample) not in (1, 3) or min(args.resample) <= 0:
            raise ParamError("--resample", args.resample, "one or three positive spacings in mm")
        trained.resample = tuple(args.resample * 3 if len(args.resample) == 1 else args.resample)
    elif trained.recipe is None:
        print(
            "predict: warning: the model records no preprocessing (trained before it was recorded); "
            ".h5 cases are used as they are: give --resample if training resampled",
            flush=True,
        )
    scans = find_scans(args.input, len(trained.channels))
    cfg = inference_config(
        trained,
        {
            "patch": args.patch,
            "stride": args.stride,
            "batch_size": args.batch_size,
            "gaussian": args.gaussian,
            "tta_flip": args.tta_flip,
            "largest_component": args.largest_component,
            "amp": args.amp,
            "device": args.device,
        },
    )
    what = ", ".join(f"{k} {trained.meta[k]}" for k in ("method", "dataset", "weights") if trained.meta.get(k))
    print(
        f"predict: {len(scans)} scan(s) with {args.model} ({what}); window {list(cfg.patch)} step {list(cfg.stride)}",
        flush=True,
    )
    references = find_references([s.name for s in scans], args.labels) if args.labels else None
    done = segment_scans(
        trained, scans, args.output, cfg, references, args.distance_unit, progress=not args.no_progress
    )
    print(f"predict: {len(done)} prediction(s) -> {args.output}/")
    if references is not None:
        rows = [d.row for d in done if d.row is not None]
        summary = summarize(rows, args.distance_unit)
        write_per_case(args.output / "per_case.csv", rows)
        write_json(args.output / "metrics.json", summary)
        print(format_table(summary).replace("test cases", "scan(s)"))
    return 0
