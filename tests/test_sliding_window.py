import numpy as np
import pytest
import torch

from cvcl.inference.predict import InferConfig, largest_component, predict_volume
from cvcl.inference.sliding_window import gaussian_importance, sliding_window_probs, window_starts


class PointwiseNet(torch.nn.Module):
    """Logits that depend only on the voxel's own value: sliding windows must reproduce them exactly."""

    def forward(self, x):
        return torch.cat([-x[:, :1], x[:, :1]], dim=1)


@pytest.mark.parametrize("size,patch,stride", [(190, 112, 18), (88, 80, 4), (80, 80, 4), (50, 16, 7)])
def test_window_starts_cover_the_axis_and_touch_the_far_border(size, patch, stride):
    starts = window_starts(size, patch, stride)
    assert starts[0] == 0 and starts[-1] == size - patch
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s:s + patch] = True
    assert covered.all()


def test_la_protocol_window_counts():
    # a 190x142x88 LA volume with the paper's 112x112x80 patch and 18/18/4 strides
    counts = [len(window_starts(s, p, st)) for s, p, st in zip((190, 142, 88), (112, 112, 80), (18, 18, 4))]
    assert counts == [6, 3, 3]


@pytest.mark.parametrize("gaussian", [False, True])
def test_pointwise_model_is_reproduced_exactly_with_padding_and_overlap(gaussian):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 37, 20, 9, generator=g)
    probs = sliding_window_probs(PointwiseNet(), image, (16, 16, 16), (5, 7, 3), batch_size=3, gaussian=gaussian)
    expected = torch.softmax(torch.cat([-image, image]), dim=0)
    assert probs.shape == (2, 37, 20, 9)
    torch.testing.assert_close(probs, expected)


def test_gaussian_importance_peaks_in_the_centre():
    w = gaussian_importance((16, 16, 8))
    assert w.shape == (16, 16, 8)
    assert w[8, 8, 4] > w[0, 0, 0] > 0


def test_predict_volume_flip_tta_and_largest_component():
    image = np.full((1, 24, 24, 16), -1.0, np.float32)
    image[0, 2:10, 2:10, 2:10] = 1.0
    image[0, 18:20, 18:20, 10:12] = 1.0
    cfg = InferConfig(patch=(16, 16, 16), stride=(8, 8, 8), batch_size=2)
    label = predict_volume(PointwiseNet(), image, cfg, torch.device("cpu"))
    assert label.dtype == np.uint8 and label.sum() == 8 ** 3 + 8
    tta = predict_volume(PointwiseNet(), image, InferConfig(**{**cfg.__dict__, "tta_flip": True}), torch.device("cpu"))
    np.testing.assert_array_equal(tta, label)
    lcc = predict_volume(PointwiseNet(), image, InferConfig(**{**cfg.__dict__, "largest_component": True}),
                         torch.device("cpu"))
    assert lcc.sum() == 8 ** 3


def test_largest_component_keeps_the_biggest():
    m = np.zeros((10, 10, 10), bool)
    m[0:2, 0:2, 0:2] = True
    m[5:9, 5:9, 5:9] = True
    out = largest_component(m)
    assert out.sum() == 64 and not out[0, 0, 0]
