import itertools
import weakref

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import sliding_window_inference
from torch.overrides import TorchFunctionMode

from cvcl.inference.predictor import TTA_FLIPS, InferConfig, largest_component, predict_volume
from cvcl.inference.sliding_window import (
    gaussian_importance,
    monai_overlap,
    sliding_window_probs,
    window_grid,
    window_starts,
)
from cvcl.io.volume import Case, Geometry, read_case, to_original_grid, write_case, write_nifti


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from a second OpenMP thread, and on a busy 2-core machine its
    synchronisation costs seconds per test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class PointwiseNet(torch.nn.Module):
    """Logits that depend only on the voxel's own value: sliding windows must reproduce them exactly."""

    def forward(self, x):
        return torch.cat([-x[:, :1], x[:, :1]], dim=1)


def conv_net(seed=0, classes=2):
    """A small random 3D CNN whose output depends on context (and is not flip-symmetric)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, classes, 3, padding=1)
    ).eval()


def reference_probs(model, image, patch, stride):
    """The definition, naively: pad, every window alone, float64 sums, divide by the counts."""
    c, *shape = image.shape
    pads = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(shape, patch, strict=True)]
    padded = torch.nn.functional.pad(image, [v for pair in reversed(pads) for v in pair]).double()
    size = padded.shape[1:]
    total = count = None
    for start in itertools.product(*[window_starts(s, p, st) for s, p, st in zip(size, patch, stride, strict=True)]):
        w = tuple(slice(a, a + p) for a, p in zip(start, patch, strict=True))
        with torch.no_grad():
            p = torch.softmax(model(padded[(slice(None), *w)][None].float()).double(), 1)[0]
        if total is None:
            total = torch.zeros((p.shape[0], *size), dtype=torch.float64)
            count = torch.zeros(size, dtype=torch.float64)
        total[(slice(None), *w)] += p
        count[w] += 1
    crop = tuple(slice(a, s - b) for (a, b), s in zip(pads, size, strict=True))
    return (total / count)[(slice(None), *crop)].float()


# -- the window grid -----------------------------------------------------------------------


@pytest.mark.parametrize("size,patch,stride", [(190, 112, 18), (88, 80, 4), (80, 80, 4), (50, 16, 7)])
def test_window_starts_cover_the_axis_and_touch_the_far_border(size, patch, stride):
    starts = window_starts(size, patch, stride)
    assert starts[0] == 0 and starts[-1] == size - patch
    assert all(0 < b - a <= stride for a, b in itertools.pairwise(starts))
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered.all()


def test_la_protocol_window_counts():
    # a 190x142x88 LA volume with the paper's 112x112x80 patch and 18/18/4 strides
    counts = [
        len(window_starts(s, p, st)) for s, p, st in zip((190, 142, 88), (112, 112, 80), (18, 18, 4), strict=True)
    ]
    assert counts == [6, 3, 3]
    assert len(window_grid((190, 142, 88), (112, 112, 80), (18, 18, 4))) == 54


def test_monai_overlap_reproduces_every_stride_as_monais_scan_interval():
    for p in range(1, 129):
        for s in range(1, p + 1):
            assert int(p * (1 - monai_overlap(p, s))) == s, (p, s)  # MONAI's _get_scan_interval
    with pytest.raises(ValueError):
        monai_overlap(16, 17)


@pytest.mark.parametrize(
    "shape,patch,stride", [((190, 142, 88), (112, 112, 80), (18, 18, 4)), ((37, 30, 21), (16, 16, 8), (5, 7, 3))]
)
def test_window_grid_equals_monais_dense_patch_slices(shape, patch, stride):
    interval = [int(p * (1 - monai_overlap(p, s))) for p, s in zip(patch, stride, strict=True)]
    assert window_grid(shape, patch, stride) == dense_patch_slices(shape, patch, interval)


# -- probabilities ---------------------------------------------------------------------------


@pytest.mark.parametrize("gaussian", [False, True])
def test_pointwise_model_is_reproduced_exactly_with_padding_and_overlap(gaussian):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 37, 20, 9, generator=g)
    probs = sliding_window_probs(PointwiseNet(), image, (16, 16, 16), (5, 7, 3), batch_size=3, gaussian=gaussian)
    expected = torch.softmax(torch.cat([-image, image]), dim=0)
    assert probs.shape == (2, 37, 20, 9) and probs.dtype == torch.float32
    torch.testing.assert_close(probs, expected)


@pytest.mark.parametrize(
    "shape,patch,stride", [((1, 37, 30, 21), (16, 16, 8), (5, 7, 3)), ((1, 10, 30, 5), (16, 16, 8), (16, 7, 8))]
)  # padded
def test_uniform_average_equals_a_naive_float64_reference_and_monai(shape, patch, stride):
    net = conv_net()
    image = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    ours = sliding_window_probs(net, image, patch, stride, batch_size=3)
    torch.testing.assert_close(ours, reference_probs(net, image, patch, stride), rtol=1e-5, atol=1e-6)
    overlap = [monai_overlap(p, s) for p, s in zip(patch, stride, strict=True)]
    with torch.no_grad():
        theirs = sliding_window_inference(
            image[None], patch, 3, lambda x: torch.softmax(net(x), 1), overlap=overlap, mode="constant"
        )[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_gaussian_weighting_equals_monais_gaussian_mode():
    net = conv_net(seed=3)
    image = torch.randn(1, 29, 26, 17, generator=torch.Generator().manual_seed(2))
    patch, stride = (16, 12, 8), (5, 4, 3)
    ours = sliding_window_probs(net, image, patch, stride, batch_size=4, gaussian=True)
    overlap = [monai_overlap(p, s) for p, s in zip(patch, stride, strict=True)]
    with torch.no_grad():
        theirs = sliding_window_inference(
            image[None],
            patch,
            4,
            lambda x: torch.softmax(net(x), 1),
            overlap=overlap,
            mode="gaussian",
            sigma_scale=0.125,
        )[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    uniform = sliding_window_probs(net, image, patch, stride, batch_size=4)
    assert (ours - uniform).abs().max() > 1e-4  # the weighting does change the average


def test_gaussian_importance_peaks_in_the_centre_and_keeps_the_border():
    from monai.data.utils import compute_importance_map

    w = gaussian_importance((16, 16, 8))
    assert w.shape == (16, 16, 8) and w.dtype == torch.float32
    assert w[8, 8, 4] > w[4, 4, 2] > w[0, 0, 0] > 0
    assert float(w.min()) == pytest.approx(1e-3)
    torch.testing.assert_close(w, compute_importance_map((16, 16, 8), mode="gaussian", sigma_scale=0.125))


@pytest.mark.parametrize("gaussian", [False, True])
def test_batched_equals_unbatched(gaussian):
    net = conv_net(seed=4)
    image = torch.randn(1, 30, 25, 14, generator=torch.Generator().manual_seed(3))
    one = sliding_window_probs(net, image, (16, 16, 8), (6, 5, 3), batch_size=1, gaussian=gaussian)
    for batch in (2, 7, 1000):
        many = sliding_window_probs(net, image, (16, 16, 8), (6, 5, 3), batch_size=batch, gaussian=gaussian)
        torch.testing.assert_close(many, one, rtol=1e-5, atol=1e-6)


def test_flip_tta_averages_the_flipped_back_predictions_of_every_window():
    net = conv_net(seed=5)
    image = torch.randn(1, 26, 21, 12, generator=torch.Generator().manual_seed(4))
    patch, stride = (16, 16, 8), (5, 5, 4)
    tta = sliding_window_probs(net, image, patch, stride, batch_size=3, flips=TTA_FLIPS)

    def flipped(axes):
        dims = [a + 2 for a in axes]
        return lambda x: net(x.flip(dims)).flip(dims) if dims else net(x)

    expected = sum(reference_probs(flipped(axes), image, patch, stride) for axes in TTA_FLIPS) / len(TTA_FLIPS)
    torch.testing.assert_close(tta, expected, rtol=1e-5, atol=1e-6)
    plain = sliding_window_probs(net, image, patch, stride, batch_size=3)
    assert (tta - plain).abs().max() > 1e-4  # this net is not flip-symmetric: TTA changes something


def test_invalid_strides_are_rejected():
    image = torch.zeros(1, 20, 20, 20)
    for stride in [(17, 8, 8), (0, 8, 8)]:
        with pytest.raises(ValueError, match="stride"):
            sliding_window_probs(PointwiseNet(), image, (16, 16, 16), stride)


# -- memory ----------------------------------------------------------------------------------


class TensorLog(TorchFunctionMode):
    """Records the dtype and size of every tensor that a torch function returns."""

    def __init__(self):
        super().__init__()
        self.dtypes, self.max_numel = set(), 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.dtypes.add(t.dtype)
                self.max_numel = max(self.max_numel, t.numel())
        return out


class SpyNet(PointwiseNet):
    """Counts how many of its earlier outputs are still alive when it is called again."""

    def __init__(self):
        super().__init__()
        self.refs, self.max_alive, self.calls = [], 0, 0

    def forward(self, x):
        self.max_alive = max(self.max_alive, sum(r() is not None for r in self.refs))
        self.calls += 1
        out = super().forward(x)
        self.refs.append(weakref.ref(out))
        return out


@pytest.mark.parametrize("gaussian", [False, True])
def test_memory_is_bounded_by_the_volume_not_by_the_number_of_windows(gaussian):
    image = torch.randn(1, 24, 20, 11)
    patch, volume = (8, 8, 8), 24 * 20 * 11
    sizes = {}
    for stride in [(8, 8, 8), (1, 1, 1)]:  # 24 windows, then 1020
        spy, log = SpyNet(), TensorLog()
        with log:
            probs = sliding_window_probs(spy, image, patch, stride, batch_size=4, gaussian=gaussian, flips=TTA_FLIPS)
        n_windows = len(window_grid(image.shape[1:], patch, stride))
        assert spy.calls == len(TTA_FLIPS) * -(-n_windows // 4)
        assert torch.float64 not in log.dtypes and probs.dtype == torch.float32
        assert log.max_numel <= 2 * volume  # the (K, X, Y, Z) accumulator is the largest tensor
        assert spy.max_alive <= 1  # outputs of earlier batches are freed, never collected
        sizes[n_windows] = log.max_numel
    assert len(set(sizes.values())) == 1, sizes


# -- whole-case prediction -------------------------------------------------------------------


def test_predict_volume_flip_tta_and_largest_component():
    image = np.full((1, 24, 24, 16), -1.0, np.float32)
    image[0, 2:10, 2:10, 2:10] = 1.0
    image[0, 18:20, 18:20, 10:12] = 1.0
    cfg = InferConfig(patch=(16, 16, 16), stride=(8, 8, 8), batch_size=2)
    label = predict_volume(PointwiseNet(), image, cfg, torch.device("cpu"))
    assert label.dtype == np.uint8 and label.sum() == 8**3 + 8
    tta = predict_volume(PointwiseNet(), image, InferConfig(**{**cfg.__dict__, "tta_flip": True}), torch.device("cpu"))
    np.testing.assert_array_equal(tta, label)
    lcc = predict_volume(
        PointwiseNet(), image, InferConfig(**{**cfg.__dict__, "largest_component": True}), torch.device("cpu")
    )
    assert lcc.sum() == 8**3 and lcc[2:10, 2:10, 2:10].all()


def test_largest_component_keeps_the_biggest_26_connected_one():
    m = np.zeros((10, 10, 10), bool)
    m[0:2, 0:2, 0:2] = True
    m[5:9, 5:9, 5:9] = True
    m[9, 9, 9] = True  # touches the big one by a corner only: 26-connected to it
    out = largest_component(m)
    assert out.sum() == 65 and not out[0, 0, 0] and out[9, 9, 9]
    empty = np.zeros((4, 4, 4), bool)
    assert not largest_component(empty).any()


# -- predictions in the case's geometry ---------------------------------------------------------


def _oblique_affine(spacing, origin, degrees=30.0):
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _itk_geometry(affine):
    """Spacing, origin and direction that ITK (LPS) must report for a RAS NIfTI affine."""
    lps = np.diag([-1.0, -1.0, 1.0])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return spacing, lps @ affine[:3, 3], (lps @ affine[:3, :3] / spacing).ravel()


@pytest.mark.parametrize("cropped", [False, True])
def test_prediction_lands_in_the_case_geometry_for_nibabel_and_simpleitk(tmp_path, cropped):
    spacing, shape = (0.7, 0.9, 2.5), (30, 26, 12)
    source = Geometry((0.7, 0.9, 2.5), _oblique_affine(spacing, (12.0, -40.0, 7.5)))
    origin = (5, 3, 2)
    geometry = source.cropped(origin, (42, 33, 17)) if cropped else source
    image = np.full((1, *shape), -1.0, np.float32)
    image[0, 4:15, 6:20, 3:9] = 1.0  # the "prediction" of the pointwise net
    write_case(tmp_path / "c.h5", Case("c", image, (image[0] > 0).astype(np.uint8), geometry))
    case = read_case(tmp_path / "c.h5")  # the processed case, as the infer stage reads it
    label = predict_volume(
        PointwiseNet(), case.image, InferConfig(patch=(16, 16, 16), stride=(8, 8, 8)), torch.device("cpu")
    )
    np.testing.assert_array_equal(label, case.label)
    full, affine = to_original_grid(label, case.geometry)
    write_nifti(tmp_path / "c.nii.gz", full, affine)

    expected_affine = source.affine  # the source grid: cropped cases go back into it
    expected = np.zeros((42, 33, 17) if cropped else shape, np.uint8)
    o = origin if cropped else (0, 0, 0)
    expected[o[0] : o[0] + shape[0], o[1] : o[1] + shape[1], o[2] : o[2] + shape[2]] = label

    img = nib.load(tmp_path / "c.nii.gz")
    np.testing.assert_allclose(img.affine, expected_affine, atol=1e-5)
    np.testing.assert_allclose(img.header.get_zooms()[:3], spacing, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(img.dataobj), expected)
    # the first labelled voxel sits at the same world point as in the processed case's own grid
    first = np.argwhere(case.label)[0]
    world = case.geometry.affine @ np.r_[first, 1.0]
    np.testing.assert_allclose(img.affine @ np.r_[first + np.array(o), 1.0], world, atol=1e-4)

    itk = sitk.ReadImage(str(tmp_path / "c.nii.gz"))
    itk_spacing, itk_origin, itk_direction = _itk_geometry(expected_affine)
    np.testing.assert_allclose(itk.GetSpacing(), itk_spacing, rtol=1e-6)
    np.testing.assert_allclose(itk.GetOrigin(), itk_origin, atol=1e-4)
    np.testing.assert_allclose(itk.GetDirection(), itk_direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(itk).transpose(2, 1, 0), expected)  # ITK: (Z, Y, X)
