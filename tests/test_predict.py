"""``cvcl predict`` on scans outside the pipeline: geometry (read back with SimpleITK), the
training preprocessing, MLflow model URIs, and the one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.spatial.transform import Rotation

from cvcl.commands.predict import main as predict_main
from cvcl.datasets.spec import Intensity
from cvcl.entrypoint import run_stage
from cvcl.inference.predictor import InferConfig, predict_volume
from cvcl.io.nrrd import write_nrrd
from cvcl.io.volume import Case, Geometry, nifti_image, write_case
from cvcl.models.checkpoint import save_checkpoint
from cvcl.models.config import ModelConfig, build_model
from cvcl.models.vnet import VNetOutput
from cvcl.preprocessing.normalize import zscore
from cvcl.preprocessing.recipe import Recipe, prepare
from tests.conftest import ROOT, ball

MODEL_CFG = ModelConfig(in_channels=1, n_classes=2, base_filters=4, dropout=0.0, norm="batch", embed_dim=8)
WINDOW = {"patch": [16, 16, 16], "stride": [8, 8, 8]}


def oblique_affine(spacing, origin=(12.0, -30.0, 7.5), degrees=(20, -15, 30)) -> np.ndarray:
    """A voxel-to-world matrix rotated off the axes, with anisotropic voxels (mm)."""
    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def recipe(**changes) -> Recipe:
    values = dict(
        dataset="synthetic-la", channels=("image",), intensity=Intensity(), resample=None, spacing=(0.7, 0.8, 2.5)
    )
    values.update(changes)
    return Recipe(**values)


@pytest.fixture
def checkpoint(tmp_path):
    """A small random V-Net checkpoint that records its preprocessing, as the train stage writes it."""
    torch.manual_seed(0)
    student = build_model(MODEL_CFG)
    # batch norm with fresh statistics would make every voxel alike: give it some (drawn from a
    # generator of their own, so the projection head's size does not move them)
    torch.manual_seed(0)
    for m in student.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.5, 0.5)
    path = tmp_path / "model.pt"
    save_checkpoint(
        path,
        student,
        None,
        MODEL_CFG,
        {
            "method": "supervised",
            "dataset": "synthetic-la",
            "seed": 1,
            "iterations": 1,
            "labeled": ["a"],
            "patch": [16, 16, 16],
            "preprocessing": recipe().as_dict(),
        },
    )
    return path


def scan_data(shape=(30, 26, 12), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = 100 + 10 * rng.standard_normal(shape)
    image[ball(shape, (15, 13, 6), 5)] += 80
    return image.astype(np.float32)


def assert_same_grid(pred_path, image_path):
    pred, image = sitk.ReadImage(str(pred_path)), sitk.ReadImage(str(image_path))
    assert pred.GetSize() == image.GetSize()
    np.testing.assert_allclose(pred.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(pred.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(pred.GetDirection(), image.GetDirection(), atol=1e-5)
    return sitk.GetArrayFromImage(pred)


def expected_labels(checkpoint, image: np.ndarray) -> np.ndarray:
    """What the model predicts for the z-scored image, computed directly."""
    from cvcl.models.checkpoint import load_model

    model, _ = load_model(checkpoint)
    cfg = InferConfig(patch=(16, 16, 16), stride=(16, 16, 8))
    return predict_volume(model, zscore(image)[None], cfg, torch.device("cpu"))


def test_nifti_and_nrrd_oblique_anisotropic_scans_come_back_in_their_own_grid(tmp_path, checkpoint):
    image = scan_data()
    affine = oblique_affine((0.7, 0.8, 2.5))
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nifti_image(image, affine), str(scans / "patient_a.nii.gz"))
    write_nrrd(scans / "patient_b.nrrd", image, affine)
    out = tmp_path / "out"
    predict_main(["--model", str(checkpoint), "--input", str(scans), "--output", str(out), "--no-progress"])
    assert sorted(p.name for p in out.iterdir()) == ["patient_a.nii.gz", "patient_b.nrrd"]
    a = assert_same_grid(out / "patient_a.nii.gz", scans / "patient_a.nii.gz")
    b = assert_same_grid(out / "patient_b.nrrd", scans / "patient_b.nrrd")
    # the same voxels through either format, and what the network gives on the z-scored array
    # (SimpleITK's arrays are Z, Y, X)
    np.testing.assert_array_equal(a, b)
    expected = expected_labels(checkpoint, image)
    assert 0 < expected.sum() < expected.size  # a prediction with both classes: the check can fail
    np.testing.assert_array_equal(a.transpose(2, 1, 0), expected)
    assert set(np.unique(a)) <= {0, 1}


class Threshold(torch.nn.Module):
    """Foreground where the normalised intensity exceeds 1: a stand-in network whose right answer
    is known, so the test sees where a prediction lands, whatever a trained model would do."""

    def forward(self, x):
        return VNetOutput(logits=torch.cat([torch.zeros_like(x[:, :1]), x[:, :1] - 1.0], 1), d9=x, center=x)


def test_a_runs_uri_model_crops_normalises_resamples_and_lands_on_the_lesion(tmp_path, mlflow_store, monkeypatch):
    """Through ``runs:/`` (local MLflow store), with a BraTS-like recipe: crop to the non-zero box,
    z-score over it, resample 0.7x0.8x2.5 mm to 1 mm, then back: the lesion's voxels come out."""
    from cvcl.tracking.model import log_model
    from cvcl.tracking.run import stage_status, start_run

    shape = (56, 48, 16)
    image = np.zeros(shape, np.float32)
    rng = np.random.default_rng(1)
    image[6:50, 5:44, 2:14] = 100 + 5 * rng.standard_normal((44, 39, 12))  # the "brain"; zero outside
    lesion = np.zeros(shape, bool)
    lesion[20:34, 18:30, 6:10] = True
    image[lesion] = 160 + 5 * rng.standard_normal(int(lesion.sum()))
    affine = oblique_affine((0.7, 0.8, 2.5))
    brats = recipe(
        intensity=Intensity(mask="nonzero", clip_percentile=99.9, crop_nonzero=True),
        resample=(1.0, 1.0, 1.0),
        spacing=(1.0, 1.0, 1.0),
        dataset="synthetic-brats",
        channels=("flair",),
    )
    run = start_run("synthetic-brats", "threshold", {"method": "supervised"}, {})
    with stage_status(run):
        log_model(
            run,
            Threshold(),
            {
                "method": "supervised",
                "dataset": "synthetic-brats",
                "weights": "student",
                "model_config": {"in_channels": 1, "n_classes": 2},
                "preprocessing": brats.as_dict(),
                "inference": WINDOW,
            },
        )
    nib.save(nifti_image(image, affine), str(tmp_path / "new_case.nii.gz"))
    nib.save(nifti_image(lesion.astype(np.uint8), affine), str(tmp_path / "new_case_label.nii.gz"))
    labels = tmp_path / "labels"
    labels.mkdir()
    (tmp_path / "new_case_label.nii.gz").rename(labels / "new_case.nii.gz")
    out = tmp_path / "out"
    # a logged model is weights rebuilt from model_config: the stand-in is what the builder makes
    monkeypatch.setattr("cvcl.models.config.build_model", lambda cfg, with_projection=False: Threshold())
    predict_main(
        [
            "--model",
            f"runs:/{run.run_id}/model",
            "--input",
            str(tmp_path / "new_case.nii.gz"),
            "--output",
            str(out),
            "--labels",
            str(labels),
            "--no-progress",
        ]
    )
    pred = assert_same_grid(out / "new_case.nii.gz", tmp_path / "new_case.nii.gz").transpose(2, 1, 0) > 0
    dice = 2 * (pred & lesion).sum() / (pred.sum() + lesion.sum())
    assert dice > 0.85, dice
    # the lesion's centre in the world, where SimpleITK puts the prediction's
    itk = sitk.ReadImage(str(out / "new_case.nii.gz"))
    centre = [float(c) for c in np.argwhere(pred).mean(0)]
    lesion_centre = [float(c) for c in np.argwhere(lesion).mean(0)]
    np.testing.assert_allclose(
        itk.TransformContinuousIndexToPhysicalPoint(centre),
        itk.TransformContinuousIndexToPhysicalPoint(lesion_centre),
        atol=1.0,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(dice) and metrics["distance_unit"] == "mm"
    # MLflow's global settings are as the test left them (a later test's store is its own)
    import os

    assert os.environ["MLFLOW_TRACKING_URI"] == mlflow_store
    from mlflow.tracking._tracking_service import utils

    assert utils._tracking_uri is None
    assert (out / "per_case.csv").read_text().splitlines()[1].startswith("new_case,")


def test_prepare_normalises_a_scan_as_the_converters_do(tmp_path):
    """The recipe's steps equal the converters' own (nnU-Net z-score; SSL4MIS crop, clip, z-score)."""
    from cvcl.datasets.brats2019.convert import convert_case as brats_case
    from cvcl.datasets.nifti.convert import convert_case as nifti_case
    from cvcl.sources.layouts import NiftiCase

    image = scan_data()
    affine = oblique_affine((0.7, 0.8, 2.5))
    nib.save(nifti_image(image, affine), str(tmp_path / "c_0000.nii.gz"))
    nib.save(nifti_image((image > 150).astype(np.uint8), affine), str(tmp_path / "c.nii.gz"))
    converted = nifti_case(tmp_path, "c", NiftiCase([tmp_path / "c_0000.nii.gz"], tmp_path / "c.nii.gz"), "x")
    prepared = prepare(image[None], Geometry(converted.geometry.spacing, affine), recipe())
    np.testing.assert_array_equal(prepared.image, converted.image)

    brain = np.zeros_like(image)
    brain[4:26, 3:22, 2:10] = image[4:26, 3:22, 2:10]
    nib.save(nifti_image(brain, affine), str(tmp_path / "b_flair.nii.gz"))
    nib.save(nifti_image(np.zeros(brain.shape, np.uint8), affine), str(tmp_path / "b_seg.nii.gz"))
    converted = brats_case(
        "b", {"flair": tmp_path / "b_flair.nii.gz", "seg": tmp_path / "b_seg.nii.gz"}, ("flair",), "x"
    )
    from cvcl.datasets import get

    prepared = prepare(brain[None], Geometry((0.7, 0.8, 2.5), affine), recipe(intensity=get("brats2019").intensity))
    np.testing.assert_array_equal(prepared.image, converted.image)
    assert prepared.geometry.crop_origin == converted.geometry.crop_origin == (4, 3, 2)


def test_processed_h5_cases_are_used_as_they_are(tmp_path, checkpoint):
    image = zscore(scan_data())
    affine = oblique_affine((0.7, 0.8, 2.5))
    write_case(tmp_path / "done.h5", Case("done", image[None], None, Geometry((0.7, 0.8, 2.5), affine)))
    out = tmp_path / "out"
    predict_main(
        ["--model", str(checkpoint), "--input", str(tmp_path / "done.h5"), "--output", str(out), "--no-progress"]
    )
    pred = nib.load(out / "done.nii.gz")
    np.testing.assert_allclose(pred.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pred.dataobj), expected_labels(checkpoint, scan_data()))


def error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        run_stage(lambda: predict_main([*argv, "--no-progress"]))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_stop_with_one_line_naming_the_file(tmp_path, checkpoint, capsys):
    out = tmp_path / "out"
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 1), np.float32), np.eye(4)), str(flat))
    err = error_of(["--model", str(checkpoint), "--input", str(flat), "--output", str(out)], capsys)
    assert str(flat) in err and "2D image" in err
    two = tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 12, 2), np.float32), np.eye(4)), str(two))
    err = error_of(["--model", str(checkpoint), "--input", str(two), "--output", str(out)], capsys)
    assert str(two) in err and "has 2 channel(s); the model expects 1" in err
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really a nifti")
    err = error_of(["--model", str(checkpoint), "--input", str(broken), "--output", str(out)], capsys)
    assert str(broken) in err and "not a readable NIfTI" in err
    (tmp_path / "notes.txt").write_text("x")
    err = error_of(["--model", str(checkpoint), "--input", str(tmp_path / "notes.txt"), "--output", str(out)], capsys)
    assert "notes.txt" in err and ".nii.gz" in err
    err = error_of(["--model", str(tmp_path / "nope.pt"), "--input", str(flat), "--output", str(out)], capsys)
    assert "nope.pt: not found" in err
    err = error_of(
        ["--model", str(checkpoint), "--input", str(flat), "--output", str(out), "--stride", "32,8,8"], capsys
    )
    assert err.startswith("error: --stride [32, 8, 8]: expected steps no larger than the patch")
    assert not any(out.iterdir()) if out.exists() else True  # nothing half-written


def test_a_scan_error_keeps_the_finished_predictions_whole(tmp_path, checkpoint, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nifti_image(scan_data(), np.eye(4)), str(scans / "a.nii.gz"))
    (scans / "b.nii.gz").write_bytes(b"truncated")
    out = tmp_path / "out"
    err = error_of(["--model", str(checkpoint), "--input", str(scans), "--output", str(out)], capsys)
    assert "b.nii.gz" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz"]  # complete, no temporary left
    assert nib.load(out / "a.nii.gz").shape == (30, 26, 12)


# the command, and the old spelling kept as its alias
@pytest.mark.parametrize(
    "command",
    [[str(Path(sys.executable).parent / "cvcl"), "predict"], [sys.executable, "-m", "cvcl.predict"]],
    ids=["cvcl predict", "python -m cvcl.predict"],
)
def test_the_command_line_exits_2_on_a_missing_model(tmp_path, command):
    proc = subprocess.run(
        [
            *command,
            "--model",
            "runs:/0123456789abcdef/model",
            "--input",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: runs:/0123456789abcdef/model: cannot be read"), (
        proc.stderr
    )
    assert not (tmp_path / "o").exists()


def test_register_best_picks_by_validation_dice_and_models_uri_predicts(tmp_path, mlflow_store, checkpoint, capsys):
    from cvcl.commands.register import main as register_main
    from cvcl.tracking.model import register_best
    from cvcl.tracking.run import stage_status, start_run

    ids = {}
    for seed, val in ((1, 0.71), (2, 0.83), (3, 0.77)):
        run = start_run("synthetic-la", f"s{seed}", {"method": "cvcl", "seed": seed}, {})
        with stage_status(run):
            run.log_metrics({"val_dice": val, "dice": 1 - val, "hd95": 10 * val})
            if seed != 3:  # run 3 has no logged model: it is passed over
                from cvcl.models.checkpoint import load_model
                from cvcl.tracking.model import log_model

                net, meta = load_model(checkpoint)
                log_model(run, net, {**meta, "weights": "student", "inference": WINDOW})
        ids[seed] = run.run_id
    done = register_best("cvcl-synthetic-la", "val_dice", "la-best")
    assert (done.run_id, done.version, done.uri) == (ids[2], "1", "models:/la-best/1")
    # a metric of the test cases is refused without the explicit flag
    with pytest.raises(SystemExit):
        run_stage(lambda: register_main(["--experiment", "cvcl-synthetic-la", "--name", "x", "--metric", "dice"]))
    assert "--allow-test-metric" in capsys.readouterr().err
    run_stage(
        lambda: register_main(
            [
                "--experiment",
                "cvcl-synthetic-la",
                "--name",
                "la-best",
                "--metric",
                "hd95",
                "--allow-test-metric",
                "--filter",
                "params.seed = '1'",
            ]
        )
    )
    assert "registered models:/la-best/2" in capsys.readouterr().out
    image = scan_data()
    nib.save(nifti_image(image, oblique_affine((0.7, 0.8, 2.5))), str(tmp_path / "s.nii.gz"))
    predict_main(
        [
            "--model",
            "models:/la-best/1",
            "--input",
            str(tmp_path / "s.nii.gz"),
            "--output",
            str(tmp_path / "o"),
            "--no-progress",
            "--stride",
            "16,16,8",
        ]
    )
    np.testing.assert_array_equal(
        np.asarray(nib.load(tmp_path / "o" / "s.nii.gz").dataobj), expected_labels(checkpoint, image)
    )


def test_la_release_files_are_named_for_their_folder_and_resampled_as_training_was(tmp_path, checkpoint):
    """``<case>/mri_norm2.h5`` (no geometry: 0.625 mm) with ``--resample 1.25``: predicted at 1.25 mm,
    written back on the file's own 0.625 mm grid."""
    import h5py

    from cvcl.io.resample import resample_case
    from cvcl.models.checkpoint import load_model

    image = zscore(scan_data())
    (tmp_path / "CASE7").mkdir()
    with h5py.File(tmp_path / "CASE7" / "mri_norm2.h5", "w") as f:
        f["image"], f["label"] = image, (image > 1).astype(np.uint8)
    out = tmp_path / "out"
    predict_main(
        [
            "--model",
            str(checkpoint),
            "--input",
            str(tmp_path / "CASE7" / "mri_norm2.h5"),
            "--output",
            str(out),
            "--resample",
            "1.25",
            "--no-progress",
        ]
    )
    pred = nib.load(out / "CASE7.nii.gz")
    np.testing.assert_allclose(pred.affine, np.diag([0.625, 0.625, 0.625, 1.0]))
    case = resample_case(Case("c", image[None], None, Geometry.from_spacing((0.625,) * 3)), (1.25,) * 3)
    assert case.shape == (15, 13, 6)
    model, _ = load_model(checkpoint)
    expected = predict_volume(
        model,
        case.image,
        InferConfig(patch=(16, 16, 16), stride=(16, 16, 8)),
        torch.device("cpu"),
        output_shape=(30, 26, 12),
    )
    np.testing.assert_array_equal(np.asarray(pred.dataobj), expected)
