"""The MNI152-based BraTS generator: layout, labels, contrasts, determinism, and the converter."""

import nibabel as nib
import numpy as np
import pytest

from cvcl import datasets
from cvcl.datasets.synthetic_brats.source import SyntheticBraTSConfig, case_grid, generate_case, load_template
from cvcl.io.volume import read_case
from cvcl.params import Params
from cvcl.preprocessing import preprocess
from cvcl.preprocessing.config import PreprocessConfig
from cvcl.sources import fetch
from cvcl.sources.config import source_settings

CFG = SyntheticBraTSConfig(n_train=2, n_val=1, n_test=1, spacing=4.0, seed=11)
PARAMS = Params(
    {
        "dataset": "synthetic-brats",
        "download": {"synthetic_brats": {"n_train": 2, "n_val": 1, "n_test": 1, "spacing": 4.0, "seed": 11}},
    }
)
DATASET = datasets.get("synthetic-brats")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("synbrats") / "raw"
    settings = source_settings(PARAMS, DATASET.settings)
    assert settings.generator == CFG  # its own section, read as the stage reads it
    fetch(DATASET, settings, out, progress=False)
    return out


def load(raw, case_id):
    folder = next(raw.glob(f"*/{case_id}"))
    return {
        k: np.asarray(nib.load(folder / f"{case_id}_{k}.nii.gz").dataobj) for k in ("flair", "t1", "t1ce", "t2", "seg")
    }, folder.parent.name


def test_written_in_the_brats_layout_with_lists(raw):
    ids = [f"synbrats_{i:03d}" for i in range(4)]
    found = sorted(p.name for p in raw.glob("[HL]GG/*"))
    assert found == ids
    for case_id in ids:
        volumes, grade = load(raw, case_id)
        assert volumes["flair"].dtype == np.int16 and volumes["seg"].dtype == np.uint8
        assert grade == ("HGG" if (volumes["seg"] == 4).any() else "LGG")
    assert (raw / "train.list").read_text().split() == ids[:2]
    assert (raw / "val.list").read_text().split() == ids[2:3]
    assert (raw / "test.list").read_text().split() == ids[3:]


def test_anatomy_and_tumour_are_plausible(raw):
    shape, _ = case_grid(CFG, load_template())
    for case_id in ("synbrats_000", "synbrats_001", "synbrats_002"):
        v, _ = load(raw, case_id)
        brain = v["flair"] > 0
        assert v["flair"].shape == shape
        assert all(((v[k] > 0) == brain).all() for k in ("t1", "t1ce", "t2"))  # skull-stripped, background 0
        assert 0.15 < brain.mean() < 0.5
        seg = v["seg"]
        assert set(np.unique(seg)) <= {0, 1, 2, 4} and (seg == 2).any()
        assert not (seg[~brain]).any()  # the tumour is in the brain
        oedema, normal = seg == 2, brain & (seg == 0)
        ratio = {k: np.median(v[k][oedema]) / np.median(v[k][normal]) for k in ("flair", "t2")}
        assert ratio["flair"] > 1.3 and ratio["t2"] > 1.2  # oedema: bright in FLAIR and T2
        assert np.median(v["t1"][oedema]) < np.percentile(v["t1"][normal], 75)  # darker than white matter in T1
        if (seg == 4).any():  # enhancing rim: much brighter after contrast
            rim = seg == 4
            gain = np.median(v["t1ce"][rim]) / np.median(v["t1ce"][normal])
            assert gain > 1.3 * np.median(v["t1"][rim]) / np.median(v["t1"][normal])


def test_cases_are_deterministic_and_distinct(raw):
    images, seg, affine = generate_case(1, CFG)  # regenerated: equal to what the fetch wrote
    written, _ = load(raw, "synbrats_001")
    np.testing.assert_array_equal(images["flair"], written["flair"])
    np.testing.assert_array_equal(seg, written["seg"])
    assert not np.array_equal(seg, load(raw, "synbrats_002")[0]["seg"])
    np.testing.assert_allclose(np.diag(affine)[:3], [4.0, 4.0, 4.0])


def test_goes_through_the_brats_converter(raw, tmp_path):
    cfg = PreprocessConfig(modalities=("flair", "t1", "t1ce", "t2"))
    assert preprocess(datasets.get("synthetic-brats"), raw, tmp_path / "p", config=cfg, progress=False) == 4
    case = read_case(tmp_path / "p" / "synbrats_000.h5")
    volumes, _ = load(raw, "synbrats_000")
    assert case.image.shape[0] == 4
    assert case.label.sum() == (volumes["seg"] > 0).sum()  # whole tumour, nothing cropped away
    assert case.shape < volumes["seg"].shape  # cropped to the brain
