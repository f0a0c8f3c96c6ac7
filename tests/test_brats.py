"""`brats2019`: BraTS 2019 cases written here in the real layout (HGG/LGG, `<case>/<case>_<kind>.nii.gz`),
through the verified local copy and the SSL4MIS conversion."""

import json

import nibabel as nib
import numpy as np
import pytest

from cvcl import datasets
from cvcl.data.split import make_split
from cvcl.datasets.brats2019 import SSL4MIS
from cvcl.datasets.brats2019.convert import CLIP_PERCENTILE
from cvcl.errors import DataError, ParamError
from cvcl.io.volume import nifti_image, read_case, to_original_grid
from cvcl.params import Params
from cvcl.preprocessing import preprocess
from cvcl.preprocessing.config import PreprocessConfig, preprocess_config
from cvcl.sources import fetch, protocol
from cvcl.sources.config import DownloadConfig, SourceSettings
from tests.conftest import ball

SHAPE = (48, 52, 40)
AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239], [0, 0, 1.0, 0], [0, 0, 0, 1]])  # BraTS's own
KINDS = ("flair", "t1", "t1ce", "t2")


def write_case(root, grade, case_id, rng, *, skip=(), seg_values=(1, 2, 4), seg_shape=SHAPE, truncate=None):
    folder = root / grade / case_id
    folder.mkdir(parents=True)
    brain = ball(SHAPE, (24, 27, 19), 15)
    volumes = {}
    for i, kind in enumerate(KINDS):
        image = np.where(brain, np.clip(rng.normal(300 + 100 * i, 40, SHAPE), 1, None), 0).astype(np.int16)
        volumes[kind] = image
    seg = np.zeros(seg_shape, np.uint8)
    seg[ball(seg_shape, (20, 30, 18), 7)] = seg_values[1]
    seg[ball(seg_shape, (20, 30, 18), 4)] = seg_values[2]
    seg[ball(seg_shape, (20, 30, 18), 2)] = seg_values[0]
    volumes["seg"] = seg
    for kind, data in volumes.items():
        if kind in skip:
            continue
        path = folder / f"{case_id}_{kind}.nii.gz"
        nib.save(nifti_image(data, AFFINE), path)
        if kind == truncate:
            path.write_bytes(path.read_bytes()[:300])
    return volumes, brain


@pytest.fixture
def source(tmp_path, rng):
    root = tmp_path / "MICCAI_BraTS_2019_Data_Training"
    cases = {
        "BraTS19_TEST_001_1": write_case(root, "HGG", "BraTS19_TEST_001_1", rng),
        "BraTS19_TEST_002_1": write_case(root, "HGG", "BraTS19_TEST_002_1", rng),
        "BraTS19_TEST_003_1": write_case(root, "LGG", "BraTS19_TEST_003_1", rng),
    }
    (root / "name_mapping.csv").write_text("not part of any case\n")
    return root, cases


def download(local, out):
    return fetch(
        datasets.get("brats2019"),
        SourceSettings(DownloadConfig(local_path=str(local))),
        out,
        progress=False,
    )


def test_flair_whole_tumour_brain_crop_and_brain_zscore(source, tmp_path):
    root, cases = source
    raw, out = tmp_path / "raw", tmp_path / "processed"
    download(root, raw)
    assert (raw / "LGG/BraTS19_TEST_003_1/BraTS19_TEST_003_1_t1ce.nii.gz").is_file()
    assert not (raw / "name_mapping.csv").exists()  # only the files of the layout are copied
    assert len((raw / "files.sha256").read_text().splitlines()) == 15
    assert preprocess(datasets.get("brats2019"), raw, out, progress=False) == 3
    for case_id, (volumes, brain) in cases.items():
        case = read_case(out / f"{case_id}.h5")
        where = np.argwhere(brain)
        lo, hi = where.min(axis=0), where.max(axis=0) + 1
        assert case.geometry.crop_origin == tuple(lo) and case.shape == tuple(hi - lo)
        assert case.image.shape == (1, *case.shape) and case.image.dtype == np.float32
        inside = brain[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        values = case.image[0][inside].astype(np.float64)
        assert abs(values.mean()) < 1e-4 and abs(values.std() - 1) < 1e-4  # z-score over the brain
        assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1}
        full, affine = to_original_grid(case.label, case.geometry)  # back into the 240x240x155-style grid
        np.testing.assert_array_equal(full, (volumes["seg"] > 0).astype(np.uint8))
        np.testing.assert_allclose(affine, AFFINE)
        np.testing.assert_allclose(case.geometry.affine[:3, 3], AFFINE[:3, :3] @ lo + AFFINE[:3, 3])


def test_modalities_select_the_channels_in_order(source, tmp_path):
    root, cases = source
    download(root, tmp_path / "raw")
    cfg = preprocess_config(Params({"preprocess": {"modalities": ["t1ce", "flair"]}}))
    preprocess(datasets.get("brats2019"), tmp_path / "raw", tmp_path / "p", config=cfg, progress=False)
    case = read_case(tmp_path / "p" / "BraTS19_TEST_002_1.h5")
    volumes, brain = cases["BraTS19_TEST_002_1"]
    assert case.image.shape[0] == 2
    o, s = case.geometry.crop_origin, case.shape
    crop = (slice(o[0], o[0] + s[0]), slice(o[1], o[1] + s[1]), slice(o[2], o[2] + s[2]))
    for channel, kind in enumerate(["t1ce", "flair"]):
        raw = volumes[kind][crop].astype(np.float64)
        inside = brain[crop]
        clipped = np.minimum(raw, np.percentile(raw[inside], CLIP_PERCENTILE))
        expected = (clipped - clipped[inside].mean()) / clipped[inside].std()
        np.testing.assert_allclose(case.image[channel], expected, atol=1e-4)


def test_the_brightest_brain_voxels_are_clipped_before_normalising(tmp_path, rng):
    root = tmp_path / "brats"
    volumes, brain = write_case(root, "HGG", "BraTS19_X_1", rng)
    flair = volumes["flair"].copy()
    flair[24, 27, 19] = 30000  # one hot voxel must not squash the rest of the scan
    nib.save(nifti_image(flair, AFFINE), root / "HGG/BraTS19_X_1/BraTS19_X_1_flair.nii.gz")
    download(root, tmp_path / "raw")
    preprocess(datasets.get("brats2019"), tmp_path / "raw", tmp_path / "p", progress=False)
    image = read_case(tmp_path / "p" / "BraTS19_X_1.h5").image[0]
    assert image.max() < 4.0 and float(np.sort(image.ravel())[-2]) == pytest.approx(float(image.max()))


@pytest.mark.parametrize(
    "problem,modalities,file,message",
    [
        ("missing_t1", ["flair", "t1"], "BraTS19_BAD_1_t1.nii.gz", "lacks its t1 modality"),
        ("missing_seg", ["flair"], "BraTS19_BAD_1_seg.nii.gz", "lacks its segmentation"),
        ("label3", ["flair"], "BraTS19_BAD_1_seg.nii.gz", "outside the expected [0, 1, 2, 4]"),
        ("shape", ["flair"], "BraTS19_BAD_1_seg.nii.gz", "differs from image shape"),
        ("truncated", ["flair"], "BraTS19_BAD_1_flair.nii.gz", "not a readable NIfTI"),
    ],
)
def test_bad_cases_stop_the_stage_naming_the_file(tmp_path, rng, problem, modalities, file, message):
    root = tmp_path / "brats"
    write_case(root, "HGG", "BraTS19_OK_1", rng)
    write_case(
        root,
        "LGG",
        "BraTS19_BAD_1",
        rng,
        skip={"missing_t1": ("t1",), "missing_seg": ("seg",)}.get(problem, ()),
        seg_values=(3, 2, 4) if problem == "label3" else (1, 2, 4),
        seg_shape=(48, 52, 39) if problem == "shape" else SHAPE,
        truncate="flair" if problem == "truncated" else None,
    )
    download(root, tmp_path / "raw")
    cfg = PreprocessConfig(modalities=tuple(modalities))
    with pytest.raises(DataError) as info:
        preprocess(datasets.get("brats2019"), tmp_path / "raw", tmp_path / "processed", config=cfg, progress=False)
    assert message in str(info.value) and file in str(info.value)
    assert not (tmp_path / "processed").exists()


def test_a_missing_modality_is_fine_when_it_is_not_selected(tmp_path, rng):
    root = tmp_path / "brats"
    write_case(root, "HGG", "BraTS19_A_1", rng, skip=("t1", "t2"))
    download(root, tmp_path / "raw")
    assert preprocess(datasets.get("brats2019"), tmp_path / "raw", tmp_path / "p", progress=False) == 1


def test_bad_modalities_param():
    with pytest.raises(ParamError, match="preprocess.modalities = \\['flair', 'dwi'\\]"):
        preprocess_config(Params({"preprocess": {"modalities": ["flair", "dwi"]}}))
    with pytest.raises(ParamError, match="preprocess.modalities"):
        preprocess_config(Params({"preprocess": {"modalities": ["flair", "flair"]}}))


def test_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty" / "HGG").mkdir(parents=True)
    with pytest.raises(DataError, match="empty"):
        download(tmp_path / "empty", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_missing_ssl4mis_cases_fall_back_to_a_seeded_random_split(source, tmp_path):
    root, _ = source
    record = download(root, tmp_path / "raw")
    assert record["fallback"] == "random" and "335 cases of SSL4MIS" in record["reason"]
    preprocess(datasets.get("brats2019"), tmp_path / "raw", tmp_path / "p", progress=False)
    split = make_split(tmp_path / "p", labeled=1, test_fraction=0.34, seed=5)  # strategy: protocol
    assert split["protocol"] == "random" and split["seed"] == 5 and "SSL4MIS" in split["fallback"]
    assert len(split["test"]) == 1 and len(split["labeled"]) == 1 and len(split["unlabeled"]) == 1


def test_lists_that_come_with_the_data_win(source, tmp_path):
    root, _ = source
    (root / "train.list").write_text("BraTS19_TEST_003_1\nBraTS19_TEST_001_1\n")
    (root / "test.list").write_text("BraTS19_TEST_002_1\n")
    record = download(root, tmp_path / "raw")
    assert record["lists"] == "user" and record["fallback"] is None
    preprocess(datasets.get("brats2019"), tmp_path / "raw", tmp_path / "p", progress=False)
    split = make_split(tmp_path / "p", labeled=1)
    assert split["protocol"] == "fixed-lists" and split["lists"] == "user"
    assert split["labeled"] == ["BraTS19_TEST_003_1"] and split["test"] == ["BraTS19_TEST_002_1"]


def test_a_complete_copy_gets_the_ssl4mis_split(tmp_path):
    published = protocol.shipped(SSL4MIS)
    record = protocol.settle(tmp_path, "brats2019", published.cases(), None, "copy", published)
    assert record["lists"] == "ssl4mis" and record["counts"] == {"train": 250, "val": 25, "test": 60}
    assert (tmp_path / "val.list").read_text().split() == published.lists["val"]
    assert json.loads((tmp_path / "protocol.json").read_text())["fallback"] is None
