import nibabel as nib
import numpy as np
import pytest

from cvcl import datasets
from cvcl.errors import DataError
from cvcl.io.volume import nifti_image, read_case
from cvcl.preprocessing import preprocess
from cvcl.preprocessing.normalize import zscore
from cvcl.workspace import read_manifest


def write_case(raw, case_id, image, label, affine=None, channels=1):
    affine = np.diag([0.8, 0.8, 2.0, 1.0]) if affine is None else affine
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    for c in range(channels):
        nib.save(nifti_image(image.astype(np.float32) + c, affine), raw / "imagesTr" / f"{case_id}_{c:04d}.nii.gz")
    if label is not None:
        nib.save(nifti_image(label, affine), raw / "labelsTr" / f"{case_id}.nii.gz")


@pytest.fixture
def raw(tmp_path, rng):
    raw = tmp_path / "raw"
    affine = np.array([[-0.8, 0, 0, 10], [0, -0.8, 0, 20], [0, 0, 2.0, -30], [0, 0, 0, 1]])
    for i in range(3):
        img = rng.normal(100 + 10 * i, 5 + i, (20, 18, 12))
        lab = np.zeros((20, 18, 12), np.uint8)
        lab[5:12, 6:10, 3:8] = 1
        write_case(raw, f"case{i}", img, lab, affine)
    (raw / "train.list").write_text("case2\ncase0\n")
    (raw / "test.list").write_text("case1\n")
    return raw


def test_nifti_cases_become_zscored_h5_with_geometry(raw, tmp_path):
    out = tmp_path / "processed"
    assert preprocess(datasets.get("nifti"), raw, out, progress=False) == 3
    case = read_case(out / "case0.h5")
    assert case.image.shape == (1, 20, 18, 12) and case.image.dtype == np.float32
    assert abs(float(case.image.mean())) < 1e-5 and abs(float(case.image.std()) - 1) < 1e-4
    assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1}
    np.testing.assert_allclose(case.geometry.spacing, (0.8, 0.8, 2.0))
    np.testing.assert_allclose(case.geometry.affine, nib.load(raw / "imagesTr" / "case0_0000.nii.gz").affine)
    rows = read_manifest(out)
    assert [r["case_id"] for r in rows] == ["case0", "case1", "case2"]
    assert rows[0]["shape"] == "20x18x12" and rows[0]["spacing"] == "0.8x0.8x2"
    assert {r["case_id"]: r["subset"] for r in rows} == {"case0": "train", "case1": "test", "case2": "train"}
    assert (out / "train.list").read_text().split() == ["case2", "case0"]  # list order kept


def test_multichannel_cases_keep_every_channel(tmp_path, rng):
    raw = tmp_path / "raw"
    lab = np.zeros((16, 16, 16), np.uint8)
    lab[4:9, 4:9, 4:9] = 1
    write_case(raw, "mm", rng.normal(0, 1, (16, 16, 16)), lab, channels=2)
    preprocess(datasets.get("nifti"), raw, tmp_path / "p", progress=False)
    assert read_case(tmp_path / "p" / "mm.h5").image.shape == (2, 16, 16, 16)


@pytest.mark.parametrize(
    "problem,message",
    [
        ("shape", "differs from image shape"),
        ("values", "outside the expected"),
        ("nan", "NaN"),
        ("constant", "constant"),
        ("nolabel", "not found"),
    ],
)
def test_bad_cases_stop_with_the_file_named_and_leave_nothing(tmp_path, rng, problem, message):
    raw = tmp_path / "raw"
    img = rng.normal(0, 1, (16, 16, 16))
    lab = np.zeros((16, 16, 16), np.uint8)
    if problem == "shape":
        lab = np.zeros((16, 16, 15), np.uint8)
    elif problem == "values":
        lab[2, 2, 2] = 3
    elif problem == "nan":
        img[1, 1, 1] = np.nan
    elif problem == "constant":
        img[:] = 7
    write_case(raw, "bad", img, None if problem == "nolabel" else lab)
    out = tmp_path / "processed"
    with pytest.raises(DataError) as info:
        preprocess(datasets.get("nifti"), raw, out, progress=False)
    assert message in str(info.value)
    assert "bad" in str(info.value)  # names the file
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_empty_dataset_folder_is_an_error(tmp_path):
    (tmp_path / "raw" / "imagesTr").mkdir(parents=True)
    with pytest.raises(DataError, match="empty"):
        preprocess(datasets.get("nifti"), tmp_path / "raw", tmp_path / "out", progress=False)


def test_zscore_over_a_mask_and_per_channel(rng):
    img = np.stack([rng.normal(5, 2, (8, 8, 8)), rng.normal(-3, 0.5, (8, 8, 8))])
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6] = True
    out = zscore(img, mask)
    for c in range(2):
        assert abs(out[c][mask].mean()) < 1e-5 and abs(out[c][mask].std() - 1) < 1e-4
