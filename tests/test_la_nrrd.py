"""`la-nrrd`: the challenge's original NRRD files, written here in their real layout, through
the download (verified local copy) and preprocess (UA-MT's conversion) stages."""

import json

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from cvcl import datasets
from cvcl.errors import DataError, ParamError
from cvcl.io.volume import read_case, to_original_grid, write_nifti
from cvcl.preprocessing import preprocess
from cvcl.preprocessing.config import CropConfig, PreprocessConfig
from cvcl.sources import fetch
from cvcl.sources.config import DownloadConfig, SourceSettings
from cvcl.workspace import read_manifest
from tests.conftest import ball

SHAPE = (80, 76, 40)
ATRIUM_BOX = ((30, 28, 14), (50, 48, 26))  # lo, hi (exclusive) of the atrium in every fixture case
LPS = np.diag([-1.0, -1.0, 1.0])


def directions(angle_deg=10.0, spacing=(0.625, 0.625, 1.25)):
    """Rows: the step of each array axis in LPS mm (an oblique in-plane rotation, as scanners write)."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return (rot * np.asarray(spacing)[None, :]).T


ORIGIN = np.array([-120.5, 80.25, -30.0])


def write_case(folder, case_id, rng, *, label_value=255, label_shape=SHAPE, truncate=False, empty=False):
    case = folder / "Training Set" / case_id
    case.mkdir(parents=True)
    header = {
        "space": "left-posterior-superior",
        "space directions": directions(),
        "space origin": ORIGIN,
        "encoding": "gzip",
        "kinds": ["domain"] * 3,
    }
    image = np.clip(rng.normal(60, 15, SHAPE), 0, 255).astype(np.uint8)
    (lo, hi) = ATRIUM_BOX
    centre = [(a + b - 1) / 2 for a, b in zip(lo, hi, strict=True)]
    atrium = ball(SHAPE, centre, 9.5)
    atrium[:, :, : lo[2]] = atrium[:, :, hi[2] :] = False
    image[atrium] = 200
    label = np.zeros(label_shape, np.uint8)
    if not empty:
        label[atrium[: label_shape[0], : label_shape[1], : label_shape[2]]] = label_value
    nrrd.write(str(case / "lgemri.nrrd"), image, header, index_order="F")
    nrrd.write(str(case / "laendo.nrrd"), label, header, index_order="F")
    if truncate:
        data = (case / "lgemri.nrrd").read_bytes()
        (case / "lgemri.nrrd").write_bytes(data[: len(data) * 2 // 3])
    return image, label


@pytest.fixture
def source(tmp_path, rng):
    folder = tmp_path / "challenge"
    volumes = {c: write_case(folder, c, rng) for c in ("A1B2C3", "D4E5F6", "G7H8I9")}
    return folder, volumes


def download(local, out):
    return fetch(
        datasets.get("la-nrrd"),
        SourceSettings(DownloadConfig(local_path=str(local))),
        out,
        progress=False,
    )


SMALL = PreprocessConfig(crop=CropConfig(min_size=(8, 8, 4), seed=3))


def test_cases_are_copied_verified_and_converted_as_ua_mt_did(source, tmp_path):
    folder, volumes = source
    raw, out = tmp_path / "raw", tmp_path / "processed"
    record = download(folder, raw)
    assert sorted(p.name for p in raw.iterdir()) == [
        "A1B2C3",
        "D4E5F6",
        "G7H8I9",
        "files.sha256",
        "origins.json",
        "protocol.json",
    ]
    assert (raw / "A1B2C3" / "laendo.nrrd").read_bytes() == (folder / "Training Set/A1B2C3/laendo.nrrd").read_bytes()
    assert len((raw / "files.sha256").read_text().splitlines()) == 6
    # three of the 100 LA cases are not the published split: a seeded random split replaces it
    assert record["lists"] is None and record["fallback"] == "random" and "UA-MT" in record["reason"]

    assert preprocess(datasets.get("la-nrrd"), raw, out, config=SMALL, progress=False) == 3
    for case_id, (image, label) in volumes.items():
        where = np.argwhere(label == 255)
        lo, hi = where.min(axis=0), where.max(axis=0) + 1
        case = read_case(out / f"{case_id}.h5")
        g = case.geometry
        o, shape = np.array(g.crop_origin), np.array(case.shape)
        assert case.image.dtype == np.float32 and case.image.shape == (1, *case.shape)
        assert case.label.dtype == np.uint8 and set(np.unique(case.label)) == {0, 1}
        # seeded margins of [10, 20) in-plane and [5, 10) through-plane on each side
        assert all(10 <= lo[a] - o[a] < 20 and 10 <= o[a] + shape[a] - hi[a] < 20 for a in (0, 1))
        assert 5 <= lo[2] - o[2] < 10 and 5 <= o[2] + shape[2] - hi[2] < 10
        sl = tuple(slice(a, a + s) for a, s in zip(o, shape, strict=True))
        # z-scored over the whole scan before the crop, as UA-MT did
        full = (image - image.mean(dtype=np.float64)) / image.std(dtype=np.float64)
        np.testing.assert_allclose(case.image[0], full[sl], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(case.label, (label[sl] == 255).astype(np.uint8))
        # geometry: the NRRD's LPS directions and origin as a RAS affine; the crop is recorded
        assert g.original_shape == SHAPE
        expected = np.eye(4)
        expected[:3, :3] = LPS @ directions().T
        expected[:3, 3] = LPS @ ORIGIN
        np.testing.assert_allclose(g.original_affine, expected, atol=1e-9)
        np.testing.assert_allclose(g.affine[:3, 3], expected[:3, :3] @ o + expected[:3, 3], atol=1e-9)
        np.testing.assert_allclose(g.spacing, (0.625, 0.625, 1.25))
    rows = read_manifest(out)
    assert rows[0]["source"] == "A1B2C3/lgemri.nrrd" and rows[0]["spacing"] == "0.625x0.625x1.25"
    assert json.loads((out / "protocol.json").read_text())["fallback"] == "random"


def test_a_prediction_written_back_overlays_the_nrrd_in_itk(source, tmp_path):
    folder, volumes = source
    download(folder, tmp_path / "raw")
    preprocess(datasets.get("la-nrrd"), tmp_path / "raw", tmp_path / "p", config=SMALL, progress=False)
    case = read_case(tmp_path / "p" / "D4E5F6.h5")
    full, affine = to_original_grid(case.label, case.geometry)
    write_nifti(tmp_path / "pred.nii.gz", full, affine)
    np.testing.assert_array_equal(
        np.asarray(nib.load(tmp_path / "pred.nii.gz").dataobj), (volumes["D4E5F6"][1] == 255).astype(np.uint8)
    )
    pred = sitk.ReadImage(str(tmp_path / "pred.nii.gz"))
    image = sitk.ReadImage(str(folder / "Training Set/D4E5F6/lgemri.nrrd"))
    assert pred.GetSize() == image.GetSize() == SHAPE
    np.testing.assert_allclose(pred.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(pred.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(pred.GetSpacing(), image.GetSpacing(), atol=1e-6)


def test_crops_are_seeded(source, tmp_path):
    folder, _ = source
    download(folder, tmp_path / "raw")

    def origins(seed, through=(5, 10)):
        cfg = PreprocessConfig(crop=CropConfig(min_size=(8, 8, 4), seed=seed, margin_through=through))
        out = tmp_path / f"p{seed}-{through}"
        preprocess(datasets.get("la-nrrd"), tmp_path / "raw", out, config=cfg, progress=False)
        return {
            c: (read_case(out / f"{c}.h5").geometry.crop_origin, read_case(out / f"{c}.h5").shape)
            for c in ("A1B2C3", "D4E5F6", "G7H8I9")
        }

    assert origins(3) == origins(3)
    assert origins(3) != origins(4)
    kept = origins(3, through=None)  # margin_through: null keeps every slice, as the h5 release
    assert all(o[2] == 0 and s[2] == SHAPE[2] for o, s in kept.values())


def test_the_box_grows_to_the_minimum_size_where_the_scan_allows(source, tmp_path):
    folder, _ = source
    download(folder, tmp_path / "raw")
    preprocess(datasets.get("la-nrrd"), tmp_path / "raw", tmp_path / "p", progress=False)  # default: 112x112x80
    case = read_case(tmp_path / "p" / "A1B2C3.h5")
    assert case.shape == SHAPE  # the fixture scan is smaller than the minimum: the whole scan


@pytest.mark.parametrize(
    "problem,file,message",
    [
        ("values", "laendo.nrrd", "outside the expected [0, 255]"),
        ("empty", "laendo.nrrd", "no atrium voxels"),
        ("shape", "laendo.nrrd", "differs from image shape"),
        ("truncated", "lgemri.nrrd", "not a readable NRRD"),
    ],
)
def test_bad_cases_stop_the_stage_naming_the_file(tmp_path, rng, problem, file, message):
    folder = tmp_path / "challenge"
    write_case(folder, "GOOD01", rng)
    write_case(
        folder,
        "BAD002",
        rng,
        label_value=128 if problem == "values" else 255,
        empty=problem == "empty",
        label_shape=(80, 76, 39) if problem == "shape" else SHAPE,
        truncate=problem == "truncated",
    )
    download(folder, tmp_path / "raw")
    with pytest.raises(DataError) as info:
        preprocess(datasets.get("la-nrrd"), tmp_path / "raw", tmp_path / "processed", progress=False)
    assert message in str(info.value) and f"BAD002/{file}" in str(info.value)
    assert not (tmp_path / "processed").exists()


def test_an_image_without_its_label_stops_the_download(tmp_path, rng):
    folder = tmp_path / "challenge"
    write_case(folder, "A1B2C3", rng)
    (folder / "Training Set/A1B2C3/laendo.nrrd").unlink()
    with pytest.raises(DataError, match="A1B2C3/laendo.nrrd: not found"):
        download(folder, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_local_path_is_required_and_must_exist(tmp_path):
    with pytest.raises(ParamError, match="download.local_path = None"):
        fetch(datasets.get("la-nrrd"), SourceSettings(), tmp_path / "raw")
    with pytest.raises(ParamError, match="does not exist"):
        download(tmp_path / "missing", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
