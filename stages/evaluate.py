"""Stage `evaluate`: predictions + labels -> metrics/metrics.json, metrics/per_case.csv (+ MLflow)."""

import csv
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvcl.cli import run_stage
from cvcl.errors import DataError
from cvcl.evaluation.metrics import case_metrics
from cvcl.evaluation.report import format_table
from cvcl.evaluation.summary import summarize
from cvcl.io.atomic import atomic_path, write_json
from cvcl.io.volume import read_case, read_nifti
from cvcl.params import load_params
from cvcl.tracking.run import open_run, stage_status

PROCESSED, SPLIT, PREDICTIONS = Path("data/processed"), Path("data/splits/split.json"), Path("predictions")
RUN_FILE, METRICS, PER_CASE = Path("models/mlflow_run_infer.json"), Path("metrics/metrics.json"), Path("metrics/per_case.csv")
FIELDS = ["case_id", "dice", "jaccard", "hd95", "asd", "assd", "pred_ml", "true_ml", "empty"]


def _prediction_on_case_grid(path: Path, case) -> np.ndarray:
    """The prediction cut back to the processed grid (predictions are in the source grid)."""
    data, _ = read_nifti(path)
    g = case.geometry
    if g.crop_origin is not None:
        o, s = g.crop_origin, case.shape
        data = data[o[0]:o[0] + s[0], o[1]:o[1] + s[1], o[2]:o[2] + s[2]]
    if data.shape != case.shape:
        raise DataError(path, f"shape {data.shape} does not match the case {case.shape}")
    return data > 0.5


def main() -> None:
    params = load_params()
    unit = params.choice("evaluate.distance_unit", ("voxel", "mm"))
    if not SPLIT.is_file():
        raise DataError(SPLIT, "not found; run the split stage first")
    test = json.loads(SPLIT.read_text())["test"]
    run = open_run(RUN_FILE, params.flat(["evaluate"]))
    with stage_status(run):
        rows = []
        for case_id in tqdm(test, desc="evaluate", unit="case"):
            case = read_case(PROCESSED / f"{case_id}.h5", load_image=False)
            if case.label is None:
                raise DataError(PROCESSED / f"{case_id}.h5", "has no label to evaluate against")
            pred = _prediction_on_case_grid(PREDICTIONS / f"{case_id}.nii.gz", case)
            truth = case.label > 0
            spacing = case.geometry.spacing if unit == "mm" else None
            voxel_ml = float(np.prod(case.geometry.spacing)) / 1000.0
            rows.append({"case_id": case_id, **case_metrics(pred, truth, spacing),
                         "pred_ml": pred.sum() * voxel_ml, "true_ml": truth.sum() * voxel_ml})
        summary = summarize(rows, unit)
        with atomic_path(PER_CASE) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        write_json(METRICS, summary)
        run.log_metrics({k: v for k, v in summary.items()
                         if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))})
        run.set_tags({"distance_unit": unit})
        run.log_artifact(METRICS)
        run.log_artifact(PER_CASE)
    print(format_table(summary))


if __name__ == "__main__":
    run_stage(main)
