"""Stage `evaluate`: predictions + labels -> metrics/metrics.json, metrics/per_case.csv (+ MLflow).

Each prediction is scored against the case's label at the source resolution (the label before
``preprocess.resample``; as nnU-Net does), so the figures are in the published tables' units.
Distances are in voxels (as the published LA tables) unless ``evaluate.distance_unit: mm``;
the unit is written in both files and in the printed table.

The last iteration's weights are scored too: from ``predictions/last_iteration/`` when a
``best_val`` run chose an earlier step, otherwise they are the scored model itself. Their
figures are the ``*_last`` metrics and ``metrics/per_case_last.csv``, so every run reports the
last-iteration and the chosen model side by side (``chosen_step``, ``last_step``).
"""

import math

from cvcl import workspace
from cvcl.entrypoint import run_stage
from cvcl.evaluation.cases import score_cases, write_overlays
from cvcl.evaluation.config import EvaluateConfig
from cvcl.evaluation.report import format_table, write_per_case
from cvcl.evaluation.summary import LAST_SUFFIX, last_iteration_summary, summarize
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
        info = workspace.read_checkpoint_info()
        rows_last = rows
        if workspace.PREDICTIONS_LAST.is_dir():
            rows_last = score_cases(test, workspace.PROCESSED, workspace.PREDICTIONS_LAST, unit)
        summary.update(last_iteration_summary(summarize(rows_last, unit), info))
        write_per_case(workspace.PER_CASE, rows)
        write_per_case(workspace.PER_CASE_LAST, rows_last)
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
        tags = {"distance_unit": unit, "degenerate": str(summary["degenerate"]).lower()}
        if "checkpoint" in info:
            tags["checkpoint"] = info["checkpoint"]
        run.set_tags(tags)
        run.log_artifact(workspace.METRICS)
        run.log_artifact(workspace.PER_CASE)
        run.log_artifact(workspace.PER_CASE_LAST)
    print(format_table(summary))
    if workspace.PREDICTIONS_LAST.is_dir():
        print(
            f"chosen on validation: step {summary.get('chosen_step')}; "
            f"last iteration (step {summary.get('last_step')}): "
            f"Dice {summary['dice' + LAST_SUFFIX] * 100:.2f} %, HD95 {summary['hd95' + LAST_SUFFIX]:.2f} {unit}"
        )


if __name__ == "__main__":
    run_stage(main)
