"""preprocess.resample: cases at a target spacing, geometry that stays in place, predictions
brought back to the source grid, evaluation against the source label."""

import numpy as np
import pytest
import torch

from cvcl.errors import ParamError
from cvcl.inference.predictor import InferConfig, predict_volume
from cvcl.io.resample import resample_case, resize_label, resize_probabilities, target_shape
from cvcl.io.volume import Case, Geometry, read_case, to_original_grid, write_case
from cvcl.params import Params
from cvcl.preprocessing.config import preprocess_config
from tests.conftest import ball


def _case(shape=(40, 30, 20), spacing=(0.625, 0.625, 1.25)):
    rng = np.random.default_rng(0)
    label = ball(shape, (20, 15, 10), 7).astype(np.uint8)
    image = (label + 0.1 * rng.standard_normal(shape)).astype(np.float32)[None]
    return Case("c", image, label, Geometry.from_spacing(spacing), "la")


def _world(affine, index):
    return (affine @ np.array([*index, 1.0]))[:3]


def test_target_shape_and_spacing_cover_the_same_extent():
    case = _case()
    out = resample_case(case, (1.25, 1.25, 1.25))
    assert out.shape == target_shape(case.shape, case.geometry.spacing, (1.25,) * 3) == (20, 15, 20)
    extent = np.array(case.shape) * np.array(case.geometry.spacing)
    np.testing.assert_allclose(np.array(out.shape) * np.array(out.geometry.spacing), extent)
    # the outer voxel edges sit at the same world positions
    np.testing.assert_allclose(_world(out.geometry.affine, (-0.5,) * 3), _world(case.geometry.affine, (-0.5,) * 3))
    last = [n - 0.5 for n in out.shape]
    np.testing.assert_allclose(
        _world(out.geometry.affine, last), _world(case.geometry.affine, [n - 0.5 for n in case.shape])
    )
    assert out.geometry.source_shape == case.shape and out.geometry.source_spacing == case.geometry.spacing
    np.testing.assert_array_equal(out.source_label, case.label)


def test_label_keeps_its_classes_and_volume():
    case = _case()
    out = resample_case(case, (1.25, 1.25, 1.25))
    assert set(np.unique(out.label)) == {0, 1}
    ml = lambda lab, sp: lab.sum() * np.prod(sp)  # noqa: E731
    assert ml(out.label, out.geometry.spacing) == pytest.approx(ml(case.label, case.geometry.spacing), rel=0.15)
    back = resize_label(out.label, case.shape)
    dice = 2 * (back & case.label).sum() / (back.sum() + case.label.sum())
    assert dice > 0.9


def test_probabilities_return_to_the_source_grid():
    probs = torch.zeros(2, 20, 15, 20)
    probs[1, 5:15, 4:11, 5:15] = 1
    probs[0] = 1 - probs[1]
    up = resize_probabilities(probs, (40, 30, 20))
    assert up.shape == (2, 40, 30, 20)
    torch.testing.assert_close(up.sum(0), torch.ones(40, 30, 20))


def test_processed_case_round_trip_keeps_source_grid_and_label(tmp_path):
    case = _case()
    cropped = Case("c", case.image, case.label, case.geometry.cropped((3, 4, 5), (60, 50, 40)))
    out = resample_case(cropped, (1.25, 1.25, 1.25))
    write_case(tmp_path / "c.h5", out)
    back = read_case(tmp_path / "c.h5", load_source_label=True)
    assert back.geometry.resampled and back.geometry.source_shape == case.shape
    np.testing.assert_allclose(back.geometry.source_affine, cropped.geometry.affine)
    np.testing.assert_array_equal(back.source_label, case.label)
    assert read_case(tmp_path / "c.h5").source_label is None  # loaded on request only
    # a prediction on the source grid goes back into the uncropped volume with its affine
    full, affine = to_original_grid(case.label, back.geometry)
    assert full.shape == (60, 50, 40) and full[3:43, 4:34, 5:25].sum() == case.label.sum()
    np.testing.assert_allclose(affine, case.geometry.affine)


def test_predict_volume_writes_the_source_shape():
    class Ones(torch.nn.Module):
        def forward(self, x):
            return torch.stack([torch.zeros_like(x[:, 0]), x[:, 0]], 1)

    image = np.ones((1, 20, 16, 16), np.float32)
    cfg = InferConfig(patch=(16, 16, 16), stride=(8, 8, 8), batch_size=2, amp=False)
    label = predict_volume(Ones(), image, cfg, torch.device("cpu"), output_shape=(40, 32, 32))
    assert label.shape == (40, 32, 32) and label.all()


@pytest.mark.parametrize("value,expected", [(None, None), (1.25, (1.25, 1.25, 1.25)), ([1, 1, 2.5], (1.0, 1.0, 2.5))])
def test_resample_param(value, expected):
    assert preprocess_config(Params({"preprocess": {"resample": value}})).resample == expected


@pytest.mark.parametrize("value", [0, -1, [1, 2], "1mm", True])
def test_bad_resample_param_names_it(value):
    with pytest.raises(ParamError, match="preprocess.resample"):
        preprocess_config(Params({"preprocess": {"resample": value}}))
