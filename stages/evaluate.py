"""Stage `evaluate`: predictions + labels -> metrics/metrics.json, metrics/per_case.csv (+ MLflow).

Distances are in voxels (as the published LA tables) unless ``evaluate.distance_unit: mm``;
the unit is written in both files and in the printed table.
"""

import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvcl.cli import run_stage
from cvcl.errors import DataError
from cvcl.evaluation.report import format_table, write_per_case
from cvcl.evaluation.summary import DISTANCE_UNITS, case_row, summarize
from cvcl.evaluation.overlays import pick_cases, save_overlay
from cvcl.io.atomic import atomic_path, write_json
from cvcl.io.volume import read_case, read_nifti
from cvcl.params import load_params
from cvcl.tracking.run import open_run, stage_status

PROCESSED, SPLIT, PREDICTIONS = Path("data/processed"), Path("data/splits/split.json"), Path("predictions")
RUN_FILE, METRICS, PER_CASE = Path("models/mlflow_run_infer.json"), Path("metrics/metrics.json"), Path("metrics/per_case.csv")
OVERLAYS = Path("metrics/overlays")  # axial slices of the best, median and worst test case


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
    unit = params.choice("evaluate.distance_unit", DISTANCE_UNITS)
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
            rows.append(case_row(case_id, pred, case.label > 0, case.geometry.spacing, unit))
        summary = summarize(rows, unit)
        write_per_case(PER_CASE, rows)
        write_json(METRICS, summary)
        with atomic_path(OVERLAYS, directory=True) as folder:
            for rank, row in pick_cases(rows).items():
                case = read_case(PROCESSED / f"{row['case_id']}.h5")
                pred = _prediction_on_case_grid(PREDICTIONS / f"{row['case_id']}.nii.gz", case)
                save_overlay(folder / f"{rank}-{row['case_id']}.png", case.image, case.label > 0, pred,
                             f"{rank}: {row['case_id']}, Dice {100 * row['dice']:.1f}%")
        for picture in sorted(OVERLAYS.glob("*.png")):
            run.log_artifact(picture, "overlays")
        run.log_metrics({k: v for k, v in summary.items()
                         if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))})
        run.set_tags({"distance_unit": unit})
        run.log_artifact(METRICS)
        run.log_artifact(PER_CASE)
    print(format_table(summary))


if __name__ == "__main__":
    run_stage(main)
