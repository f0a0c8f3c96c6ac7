"""The evaluate stage: per-case rows and the summary, units named, logged to the MLflow run."""

import csv
import json
import math

import numpy as np
import pytest
from medpy.metric import binary as mb
from mlflow import MlflowClient

from cvcl.evaluation.report import PER_CASE_FIELDS
from cvcl.io.volume import Case, Geometry, to_original_grid, write_case, write_nifti
from cvcl.tracking.run import start_run
from tests.conftest import ball

SPACING = (0.625, 0.8, 2.5)


def _case(tmp, case_id, label, pred, geometry):
    image = np.zeros((1, *label.shape), np.float32)
    write_case(tmp / "data" / "processed" / f"{case_id}.h5", Case(case_id, image, label.astype(np.uint8), geometry))
    full, affine = to_original_grid(pred.astype(np.uint8), geometry)
    write_nifti(tmp / "predictions" / f"{case_id}.nii.gz", full, affine)


@pytest.mark.parametrize("unit", ["mm", "voxel"])
def test_evaluate_writes_rows_summary_units_and_logs_them(tmp_path, monkeypatch, mlflow_store, capsys, unit):
    shape = (24, 22, 12)
    ref = ball(shape, (12, 11, 6), 5)
    pred = ball(shape, (13, 10, 6), 4) | ball(shape, (2, 2, 2), 1)
    source = Geometry.from_spacing(SPACING)
    cropped = source.cropped((4, 2, 3), (40, 30, 20))  # its prediction is written in the source grid
    _case(tmp_path, "a", ref, pred, cropped)
    _case(tmp_path, "b", ref, np.zeros(shape, bool), source)  # an empty prediction
    (tmp_path / "data" / "splits").mkdir(parents=True)
    (tmp_path / "data" / "splits" / "split.json").write_text(
        json.dumps({"labeled": [], "unlabeled": [], "val": [], "test": ["a", "b"]})
    )
    (tmp_path / "params.yaml").write_text(f"evaluate:\n  distance_unit: {unit}\n")
    monkeypatch.chdir(tmp_path)
    run = start_run("toy", "eval-test", {}, {})
    run.to_file(tmp_path / "models" / "mlflow_run_infer.json")

    from stages.evaluate import main

    main()

    with open(tmp_path / "metrics" / "per_case.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == PER_CASE_FIELDS
        rows = list(reader)
    assert [r["case_id"] for r in rows] == ["a", "b"]
    assert {r["distance_unit"] for r in rows} == {unit}
    spacing = SPACING if unit == "mm" else None
    a, b = rows
    assert float(a["dice"]) == pytest.approx(mb.dc(pred, ref), rel=1e-9)
    assert float(a["hd95"]) == pytest.approx(mb.hd95(pred, ref, spacing), rel=1e-9)
    assert float(a["asd"]) == pytest.approx(mb.asd(pred, ref, spacing), rel=1e-9)
    assert float(a["assd"]) == pytest.approx(mb.assd(pred, ref, spacing), rel=1e-9)
    voxel_ml = np.prod(SPACING) / 1000
    assert float(a["pred_ml"]) == pytest.approx(pred.sum() * voxel_ml) and float(a["true_ml"]) == pytest.approx(
        ref.sum() * voxel_ml
    )
    assert b["empty"] == "prediction" and float(b["dice"]) == 0.0 and math.isnan(float(b["hd95"]))

    summary = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert summary["distance_unit"] == unit
    assert summary["dice"] == pytest.approx(mb.dc(pred, ref) / 2)  # the empty prediction counts as 0
    assert summary["hd95"] == pytest.approx(float(a["hd95"])) and summary["hd95_std"] == 0.0
    assert (summary["n_cases"], summary["n_distance_cases"], summary["n_empty_prediction"]) == (2, 1, 1)

    client = MlflowClient(mlflow_store)
    logged = client.get_run(run.run_id)
    assert logged.data.metrics["dice"] == pytest.approx(summary["dice"])
    assert logged.data.metrics["n_empty_prediction"] == 1
    assert logged.data.tags["distance_unit"] == unit and logged.data.params["evaluate.distance_unit"] == unit
    assert {"metrics.json", "per_case.csv"} <= {x.path for x in client.list_artifacts(run.run_id)}
    out = capsys.readouterr().out
    assert f"HD95 ({unit})" in out and "empty predictions: 1" in out
    assert summary["n_degenerate"] == 1 and summary["degenerate"] is False  # one empty case, not all
    assert "note: 1 of 2 predictions are degenerate" in out


def _evaluate(tmp_path, monkeypatch, cases):
    for case_id, (label, pred) in cases.items():
        _case(tmp_path, case_id, label, pred, Geometry.from_spacing(SPACING))
    (tmp_path / "data" / "splits").mkdir(parents=True)
    (tmp_path / "data" / "splits" / "split.json").write_text(
        json.dumps({"labeled": [], "unlabeled": [], "val": [], "test": list(cases)})
    )
    (tmp_path / "params.yaml").write_text("evaluate:\n  distance_unit: voxel\n")
    monkeypatch.chdir(tmp_path)
    run = start_run("toy", "eval-degenerate", {}, {})
    run.to_file(tmp_path / "models" / "mlflow_run_infer.json")
    from stages.evaluate import main

    main()
    return run, json.loads((tmp_path / "metrics" / "metrics.json").read_text())


def test_a_collapsed_model_is_flagged_degenerate(tmp_path, monkeypatch, mlflow_store, capsys):
    shape = (24, 22, 12)
    ref = ball(shape, (12, 11, 6), 4)
    almost_all = np.ones(shape, bool)
    almost_all[:4] = False  # about 83% foreground: Dice is not 0, the model has still collapsed
    run, summary = _evaluate(tmp_path, monkeypatch, {"a": (ref, almost_all), "b": (ref, np.zeros(shape, bool))})
    assert summary["degenerate"] is True and summary["n_degenerate"] == 2
    assert 0 < summary["dice"] < 0.2
    with open(tmp_path / "metrics" / "per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["degenerate"] for r in rows] == ["True", "True"]
    assert float(rows[0]["pred_fraction"]) == pytest.approx(almost_all.mean())
    assert "WARNING: degenerate prediction on all 2 test cases" in capsys.readouterr().out
    assert MlflowClient(mlflow_store).get_run(run.run_id).data.tags["degenerate"] == "true"


def test_a_sound_prediction_is_not_degenerate(tmp_path, monkeypatch, mlflow_store, capsys):
    shape = (24, 22, 12)
    ref = ball(shape, (12, 11, 6), 4)
    run, summary = _evaluate(tmp_path, monkeypatch, {"a": (ref, ref)})
    assert summary["degenerate"] is False and summary["n_degenerate"] == 0
    assert "degenerate" not in capsys.readouterr().out
