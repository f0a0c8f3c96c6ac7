"""Stage `evaluate`: predictions + labels -> metrics/metrics.json, metrics/per_case.csv (+ MLflow).

Each prediction is scored against the case's label at the source resolution (the label before
``preprocess.resample``; as nnU-Net does), so the figures are in the published tables' units.

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
from cvcl.evaluation.summary import case_row, summarize
from cvcl.evaluation.overlays import pick_cases, save_overlay
from cvcl.io.atomic import atomic_path, write_json
from cvcl.io.resample import resize_image
from cvcl.io.volume import read_case, read_nifti
from cvcl.params import load_params
from cvcl.tracking.run import open_run, stage_status

PROCESSED, SPLIT, PREDICTIONS = Path("data/processed"), Path("data/splits/split.json"), Path("predictions")
RUN_FILE, METRICS, PER_CASE = Path("models/mlflow_run_infer.json"), Path("metrics/metrics.json"), Path("metrics/per_case.csv")
OVERLAYS = Path("metrics/overlays")  # axial slices of the best, median and worst test case


def _source_grid(case) -> tuple[tuple[int, int, int], tuple[float, float, float], np.ndarray | None]:
    """Shape, spacing and label of the case before resampling (its own when not resampled)."""
    g = case.geometry
    if g.resampled:
        return g.source_shape, g.source_spacing, case.source_label
    return case.shape, g.spacing, case.label


def _prediction_on_source_grid(path: Path, case) -> np.ndarray:
    """The prediction (written in the original volume's grid) cut to the crop, if any, at the
    source resolution: the grid of the label it is scored against."""
    data, _ = read_nifti(path)
    g = case.geometry
    shape = _source_grid(case)[0]
    if g.crop_origin is not None:
        o = g.crop_origin
        data = data[o[0]:o[0] + shape[0], o[1]:o[1] + shape[1], o[2]:o[2] + shape[2]]
    if data.shape != tuple(shape):
        raise DataError(path, f"shape {data.shape} does not match the case's source grid {tuple(shape)}")
    return data > 0.5


def main() -> None:
    params = load_params()
    unit = params.get("evaluate.distance_unit")
    if not SPLIT.is_file():
        raise DataError(SPLIT, "not found; run the split stage first")
    test = json.loads(SPLIT.read_text())["test"]
    run = open_run(RUN_FILE, params.flat(["evaluate"]))
    with stage_status(run):
        rows = []
        for case_id in tqdm(test, desc="evaluate", unit="case"):
            case = read_case(PROCESSED / f"{case_id}.h5", load_image=False, load_source_label=True)
            _, spacing, truth = _source_grid(case)
            if truth is None:
                raise DataError(PROCESSED / f"{case_id}.h5", "has no label to evaluate against")
            pred = _prediction_on_source_grid(PREDICTIONS / f"{case_id}.nii.gz", case)
            rows.append(case_row(case_id, pred, truth > 0, spacing, unit))
        summary = summarize(rows, unit)
        write_per_case(PER_CASE, rows)
        write_json(METRICS, summary)
        with atomic_path(OVERLAYS, directory=True) as folder:
            for rank, row in pick_cases(rows).items():
                case = read_case(PROCESSED / f"{row['case_id']}.h5", load_source_label=True)
                pred = _prediction_on_source_grid(PREDICTIONS / f"{row['case_id']}.nii.gz", case)
                image = case.image
                if case.geometry.resampled:  # shown on the grid the metrics were computed on
                    image = resize_image(image, case.geometry.source_shape)
                save_overlay(folder / f"{rank}-{row['case_id']}.png", image, _source_grid(case)[2] > 0, pred,
                             f"{rank}: {row['case_id']}, Dice {100 * row['dice']:.1f}%")
        for picture in sorted(OVERLAYS.glob("*.png")):
            run.log_artifact(picture, "overlays")
        run.log_metrics({k: v for k, v in summary.items()
                         if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))})
        run.set_tags({"distance_unit": unit, "degenerate": str(summary["degenerate"]).lower()})
        run.log_artifact(METRICS)
        run.log_artifact(PER_CASE)
    print(format_table(summary))


if __name__ == "__main__":
    run_stage(main)
