import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from skimage.filters import threshold_otsu

from cvcl.datasets.synthetic_la.source import SyntheticLAConfig, case_ids, generate_case, generate_dataset

CFG = SyntheticLAConfig(n_train=4, n_test=2)


def dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_cases_are_deterministic_and_distinct():
    a_img, a_lab = generate_case(0, CFG)
    b_img, b_lab = generate_case(0, CFG)
    c_img, c_lab = generate_case(1, CFG)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)
    other_seed = SyntheticLAConfig(seed=CFG.seed + 1)
    assert not np.array_equal(generate_case(0, other_seed)[1], a_lab)


def test_volume_types_shape_and_label_values():
    img, lab = generate_case(2, CFG)
    assert img.shape == lab.shape == CFG.shape
    assert img.dtype == np.float32 and lab.dtype == np.uint8
    assert set(np.unique(lab)) == {0, 1}
    assert 0.01 < lab.mean() < 0.15  # an atrium, not a speck or the whole volume


def test_size_is_configurable():
    img, lab = generate_case(0, SyntheticLAConfig(shape=(40, 36, 24)))
    assert img.shape == (40, 36, 24) and lab.any()


@pytest.mark.parametrize("index", range(4))
def test_atrium_is_one_connected_structure_with_veins(index):
    _, lab = generate_case(index, CFG)
    _, n = ndi.label(lab, structure=np.ones((3, 3, 3)))
    assert n <= 2  # chamber, veins and appendage are attached (a vein tip may be cut by the border)
    # protruding veins and appendage: the atrium fills far less of its convex hull than an
    # ellipsoid would (an ellipsoid fills ~0.95 of a voxelised hull)
    hull = ConvexHull(np.argwhere(lab))
    assert np.count_nonzero(lab) / hull.volume < 0.8


def test_blood_pool_brighter_than_its_wall_and_background():
    img, lab = generate_case(3, CFG)
    lab = lab.astype(bool)
    shell = ndi.binary_dilation(lab, iterations=2) & ~lab
    inner = ndi.binary_erosion(lab, iterations=2)
    assert np.median(img[inner]) > 1.3 * np.median(img[shell])
    assert np.median(img[inner]) > 1.3 * np.median(img[~ndi.binary_dilation(lab, iterations=6)])


def test_intensity_threshold_alone_scores_poorly():
    """Bright neighbours of the same intensity defeat a threshold: Otsu's Dice is below 0.6."""
    scores = []
    for i in range(6):
        img, lab = generate_case(i, CFG)
        scores.append(dice(img > threshold_otsu(img), lab.astype(bool)))
        # even the best possible global threshold for this very case stays poor
        best = max(dice(img > t, lab.astype(bool)) for t in np.quantile(img, np.linspace(0.5, 0.995, 40)))
        assert best < 0.75
    assert np.mean(scores) < 0.6


def test_dataset_written_in_raw_layout(tmp_path):
    import nibabel as nib

    cfg = SyntheticLAConfig(n_train=3, n_test=2, shape=(32, 32, 24))
    generate_dataset(tmp_path, cfg, progress=False)
    train, test = case_ids(cfg)
    assert (tmp_path / "train.list").read_text().split() == train
    assert (tmp_path / "test.list").read_text().split() == test
    img = nib.load(tmp_path / "imagesTr" / f"{train[0]}_0000.nii.gz")
    lab = nib.load(tmp_path / "labelsTr" / f"{train[0]}.nii.gz")
    assert img.shape == lab.shape == (32, 32, 24)
    np.testing.assert_allclose(img.header.get_zooms(), cfg.spacing)
    np.testing.assert_allclose(img.affine, lab.affine)
    assert (tmp_path / "dataset.json").exists()
