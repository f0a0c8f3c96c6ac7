"""Validation curves read back from MLflow: one line per configuration, peaks where they are."""

import matplotlib

matplotlib.use("Agg")

from cvcl import analysis  # noqa: E402
from cvcl.tracking.run import stage_status, start_run  # noqa: E402
from cvcl.validation_curves import CURVE_KNOBS, peaks, plot_validation_curves, validation_curves  # noqa: E402


def _run(method: str, lr: float, dice: list[float]) -> str:
    params = {"method": method, "labeled": 4, "seed": 101, "train.lr": lr, "model.norm": "instance"}
    params.update({f"loss.{w}_weight": 1.0 for w in ("mt", "pcl", "vcl")})
    run = start_run("la", f"{method}-{lr}", params, {"method": method})
    with stage_status(run):
        for i, d in enumerate(dice):
            run.log_metrics({"val_dice": d}, step=400 * (i + 1) - 1)  # the train stage's 0-based step
        run.log_metrics({"dice": max(dice), "jaccard": 0.5, "hd95": 10.0, "asd": 2.0})
    return run.run_id


def test_curves_and_peaks_per_configuration(mlflow_store):
    _run("supervised", 0.01, [0.60, 0.70, 0.72])
    _run("supervised", 0.03, [0.55, 0.74, 0.71])
    runs = analysis.load_runs("cvcl-la", tuned=CURVE_KNOBS)
    curves = validation_curves(runs)
    assert len(curves) == 6 and sorted(curves["iteration"].unique()) == [400, 800, 1200]
    assert curves["config"].nunique() == 2  # the learning rate names each line
    found = peaks(curves).set_index("config")
    lr03 = next(c for c in found.index if "0.03" in c)
    assert found.loc[lr03, "best_iteration"] == 800 and abs(found.loc[lr03, "best_val_dice"] - 74.0) < 1e-9
    assert found.loc[lr03, "last_iteration"] == 1200
    ax = plot_validation_curves(curves)
    assert len(ax.get_lines()) == 2
