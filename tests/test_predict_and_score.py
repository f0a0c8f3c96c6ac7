"""One predict-then-score loop (:func:`cvcl.evaluation.scoring.predict_and_score`): validation
during training, the evaluate stage (on the infer stage's files) and ``cvcl predict --labels``
give, for the same network and case, the figures the loop gives when called directly; and the
loop's figures are the metrics of the sliding-window prediction, computed without it.

The case is cropped out of a larger volume and resampled, so each user scores on its own grid:
validation on the network grid, evaluate on the source grid, ``cvcl predict`` on the original.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from cvcl.commands.predict import main as predict_main
from cvcl.evaluation.cases import score_cases
from cvcl.evaluation.metrics import case_metrics
from cvcl.evaluation.scoring import ScoringCase, predict_and_score, score_rows
from cvcl.inference.predictor import InferConfig, Predictor, predict_volume
from cvcl.io.resample import resample_case
from cvcl.io.volume import Case, Geometry, original_affine, read_case, to_original_grid, write_case, write_nifti
from cvcl.models.checkpoint import save_checkpoint
from cvcl.models.config import ModelConfig, build_model
from cvcl.training.validation import make_validator
from tests.conftest import ball

MODEL_CFG = ModelConfig(in_channels=1, n_classes=2, base_filters=4, dropout=0.0, norm="batch", embed_dim=8)
WINDOW = InferConfig(patch=(16, 16, 16), stride=(8, 8, 8), batch_size=2, amp=False)
CPU = torch.device("cpu")


@pytest.fixture
def network() -> torch.nn.Module:
    """A small random V-Net whose batch norm has statistics of its own (fresh ones would make
    every voxel alike), in eval mode; seed 2 labels part of the case as foreground (others label
    all or none of it, which would leave little to compare)."""
    torch.manual_seed(2)
    net = build_model(MODEL_CFG)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture
def case_file(tmp_path):
    """``processed/c.h5``: a ball in noise, cropped at (3, 2, 1) out of a 40x36x22 volume of
    0.8x0.8x1.6 mm voxels, then resampled to 1.0x1.0x1.6 mm."""
    rng = np.random.default_rng(0)
    shape = (34, 30, 20)
    label = ball(shape, (17, 15, 10), 7)
    image = (label + 0.5 * rng.standard_normal(shape)).astype(np.float32)[None]
    geometry = Geometry.from_spacing((0.8, 0.8, 1.6)).cropped((3, 2, 1), (40, 36, 22))
    case = resample_case(Case("c", image, label.astype(np.uint8), geometry), (1.0, 1.0, 1.6))
    assert case.geometry.resampled and case.shape != shape
    path = tmp_path / "processed" / "c.h5"
    write_case(path, case)
    return path


def _predictor(network: torch.nn.Module, cfg: InferConfig = WINDOW) -> Predictor:
    return Predictor(network, cfg, CPU, torch.contiguous_format)


def _same_row(got: dict, expected: dict) -> None:
    """``got`` (a row, or a row of per_case.csv: strings) holds exactly ``expected``'s values."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert float(got[key]) == value or (math.isnan(value) and math.isnan(float(got[key]))), key
        else:
            assert str(got[key]) == str(value), key


def test_the_loop_scores_the_sliding_window_prediction(network, case_file):
    case = read_case(case_file, load_source_label=True)
    scored = list(predict_and_score(_predictor(network), [ScoringCase.on_grid(case, "source")], "mm"))
    assert len(scored) == 1 and scored[0].name == "c"
    prediction = predict_volume(network, case.image, WINDOW, CPU, output_shape=case.geometry.source_shape)
    np.testing.assert_array_equal(scored[0].prediction, prediction)
    assert 0 < prediction.mean() < 1  # a case with something to score
    _, spacing, truth = case.source_grid()
    expected = case_metrics(prediction > 0, truth > 0, spacing)
    assert {k: scored[0].row[k] for k in ("dice", "hd95", "asd")} == {k: expected[k] for k in ("dice", "hd95", "asd")}
    # without a reference: segmented, not scored
    unscored = next(predict_and_score(_predictor(network), [ScoringCase(case, None, spacing, "source")]))
    assert unscored.row is None


def test_validation_is_the_loop_on_the_network_grid(network, case_file):
    dice = make_validator(case_file.parent, ["c"], (16, 16, 16), CPU)(network)
    case = read_case(case_file)
    half = InferConfig(patch=(16, 16, 16), stride=(8, 8, 8), batch_size=2, amp=False)
    rows = score_rows(_predictor(network, half), [ScoringCase.on_grid(case, "network")])
    assert dice == rows[0]["dice"]
    # the figure validation reported before the loop existed
    assert dice == case_metrics(predict_volume(network, case.image, half, CPU) > 0, case.label > 0)["dice"]


@pytest.mark.parametrize("unit", ["mm", "voxel"])
def test_the_evaluate_stage_scores_the_infer_stages_files_as_the_loop_scores_the_network(
    tmp_path, network, case_file, unit
):
    predictor = _predictor(network)
    predictor.write_predictions(["c"], case_file.parent, tmp_path, progress=False)  # the infer stage
    rows = score_cases(["c"], case_file.parent, tmp_path, unit, progress=False)
    direct = score_rows(predictor, [ScoringCase.on_grid(read_case(case_file, load_source_label=True), "source")], unit)
    assert len(rows) == 1
    _same_row(rows[0], direct[0])


def test_cvcl_predict_labels_scores_as_the_loop_on_the_original_grid(tmp_path, network, case_file):
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(
        checkpoint,
        network,
        None,
        MODEL_CFG,
        {"method": "supervised", "dataset": "toy", "seed": 1, "iterations": 1, "labeled": ["a"], "patch": [16, 16, 16]},
    )
    case = read_case(case_file, load_source_label=True)
    reference, _ = to_original_grid(case.source_grid()[2], case.geometry)  # the whole 40x36x22 volume
    labels = tmp_path / "labels"
    labels.mkdir()
    write_nifti(labels / "c.nii.gz", reference, original_affine(case.geometry))
    out = tmp_path / "out"
    predict_main(
        [
            "--model",
            str(checkpoint),
            "--input",
            str(case_file),
            "--output",
            str(out),
            "--labels",
            str(labels),
            "--stride",
            "8,8,8",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    with open(out / "per_case.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    item = ScoringCase(case, reference, case.source_grid()[1], "original")
    direct = score_rows(_predictor(network), [item], "mm")
    assert reference.shape == (40, 36, 22) and len(rows) == 1
    _same_row(rows[0], direct[0])
    assert json.loads((out / "metrics.json").read_text())["dice"] == direct[0]["dice"]
