"""Stage `evaluate`: predictions + labels -> metrics/metrics.json, metrics/per_case.csv (+ MLflow).

Each prediction is scored against the case's label at the source resolution (the label before
``preprocess.resample``; as nnU-Net does), so the figures are in the published tables' units.
Distances are in voxels (as the published LA tables) unless ``evaluate.distance_unit: mm``;
the unit is written in both files and in the printed table.
"""

import math

from cvcl import workspace
from cvcl.entrypoint import run_stage
from cvcl.evaluation.cases import score_cases, write_overlays
from cvcl.evaluation.config import EvaluateConfig
from cvcl.evaluation.report import format_table, write_per_case
from cvcl.evaluation.summary import summarize
from cvcl.io.atomic import atomic_path, write_json
from cvcl.params import load_params
from cvcl.tracking.run import open_run, stage_status


def main() -> None:
    params = load_params()
    unit = params.config(EvaluateConfig, "evaluate").distance_unit
    test = workspace.read_split()["test"]
    run = open_run(workspace.INFER_RUN, params.flat(["evaluate"]))
    with stage_status(run):
        rows = score_cases(test, workspace.PROCESSED, workspace.PREDICTIONS, unit)
        summary = summarize(rows, unit)
        write_per_case(workspace.PER_CASE, rows)
        write_json(workspace.METRICS, summary)
        with atomic_path(workspace.OVERLAYS, directory=True) as folder:
            write_overlays(rows, workspace.PROCESSED, workspace.PREDICTIONS, folder)
        for picture in sorted(workspace.OVERLAYS.glob("*.png")):
            run.log_artifact(picture, "overlays")
        run.log_metrics(
            {
                k: v
                for k, v in summary.items()
                if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))
            }
        )
        run.set_tags({"distance_unit": unit, "degenerate": str(summary["degenerate"]).lower()})
        run.log_artifact(workspace.METRICS)
        run.log_artifact(workspace.PER_CASE)
    print(format_table(summary))


if __name__ == "__main__":
    run_stage(main)
