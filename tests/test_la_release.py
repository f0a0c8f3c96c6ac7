"""`la`: the h5 release (the shared sample, and broken files written here) -> processed cases."""

import h5py
import numpy as np
import pytest

from cvcl import datasets
from cvcl.datasets.la import source as la
from cvcl.errors import DataError
from cvcl.io.volume import read_case
from cvcl.preprocessing import preprocess
from cvcl.sources.layouts import LA_H5, LA_RELEASE_DIR
from cvcl.workspace import read_manifest
from tests.conftest import LA_SAMPLE

MANIFEST = la.read_manifest()
needs_sample = pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="the shared LA sample is not available")


@needs_sample
def test_release_cases_keep_their_values_and_get_the_challenge_spacing(tmp_path):
    out = tmp_path / "processed"
    assert preprocess(datasets.get("la"), LA_SAMPLE, out, progress=False) == 12
    rows = {r["case_id"]: r for r in read_manifest(out)}
    train = (LA_SAMPLE / "train.list").read_text().split()
    assert [c for c, r in rows.items() if r["subset"] == "train"] == sorted(train)
    assert (out / "train.list").read_text().split() == train
    for case_id in ("06SR5RBREL16DQ6M8LWS", "UPT6DX9IQY9JAZ7HJKA7"):
        case = read_case(out / f"{case_id}.h5")
        entry = MANIFEST[case_id]
        assert case.shape == entry.shape and case.image.dtype == np.float32
        assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1}
        assert case.geometry.spacing == (0.625, 0.625, 0.625)
        np.testing.assert_allclose(case.geometry.affine, np.diag([0.625, 0.625, 0.625, 1.0]))
        assert case.geometry.crop_origin is None
        with h5py.File(LA_SAMPLE / LA_RELEASE_DIR / case_id / LA_H5) as f:
            np.testing.assert_array_equal(case.image[0], f["image"][()])  # kept as released
        fraction = float(case.label.mean())
        with open(la.MANIFEST) as f:
            expected = next(line for line in f if line.startswith(case_id)).strip().split(",")[-1]
        assert fraction == pytest.approx(float(expected), abs=1e-5)


def write_h5(raw, case_id, image, label):
    folder = raw / LA_RELEASE_DIR / case_id
    folder.mkdir(parents=True)
    with h5py.File(folder / LA_H5, "w") as f:
        if image is not None:
            f.create_dataset("image", data=image)
        if label is not None:
            f.create_dataset("label", data=label)
    return folder / LA_H5


@pytest.mark.parametrize(
    "problem,message",
    [
        ("truncated", "truncated or corrupt"),
        ("nolabel", "has no 'label' dataset"),
        ("values", "outside the expected [0, 1]"),
        ("shape", "differs from image shape"),
        ("nan", "NaN"),
        ("constant", "constant"),
    ],
)
def test_broken_release_files_stop_the_stage_naming_the_file(tmp_path, rng, problem, message):
    raw = tmp_path / "raw"
    image = rng.normal(0, 1, (24, 20, 16)).astype(np.float32)
    label = np.zeros((24, 20, 16), np.uint8)
    label[8:14, 6:12, 4:10] = 1
    write_h5(raw, "GOODCASE", image, label)
    if problem == "values":
        label[0, 0, 0] = 2
    elif problem == "shape":
        label = label[:, :, :15]
    elif problem == "nan":
        image[1, 2, 3] = np.nan
    elif problem == "constant":
        image = np.full_like(image, 0.5)
    path = write_h5(raw, "BADCASE", image, None if problem == "nolabel" else label)
    if problem == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError) as info:
        preprocess(datasets.get("la"), raw, tmp_path / "processed", progress=False)
    assert message in str(info.value) and f"BADCASE/{LA_H5}" in str(info.value)
    assert not (tmp_path / "processed").exists()


def test_an_empty_release_folder_is_an_error(tmp_path):
    (tmp_path / "raw" / LA_RELEASE_DIR).mkdir(parents=True)
    with pytest.raises(DataError, match="empty"):
        preprocess(datasets.get("la"), tmp_path / "raw", tmp_path / "processed", progress=False)
