"""The whole pipeline through DVC, as a user runs it, on tiny params (slow: about 2-3 minutes)."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from mlflow import MlflowClient

from tests.helpers import TINY, copy_repository, run, set_params

pytestmark = pytest.mark.slow
STAGES = ["download", "preprocess", "split", "train", "infer", "evaluate"]


def ran(output: str) -> list[str]:
    return [s for s in STAGES if f"Running stage '{s}'" in output]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    copy_repository(repo)
    set_params(repo, TINY)
    run(["git", "commit", "-q", "-am", "tiny params"], repo)
    first = run(["dvc", "repro"], repo, timeout=900)
    (repo.parent / "first_repro.log").write_text(first.stdout + first.stderr)
    return repo


def first_output(repo) -> str:
    return (repo.parent / "first_repro.log").read_text()


def test_every_stage_runs_and_writes_its_outputs(repo):
    assert ran(first_output(repo)) == STAGES
    raw = repo / "data" / "raw"
    assert (raw / "train.list").read_text().split() == [f"synla_{i:03d}" for i in range(5)]
    processed = repo / "data" / "processed"
    with open(processed / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 and set(rows[0]) >= {"case_id", "shape", "spacing", "source"}
    assert rows[0]["shape"] == "40x36x24"
    split = json.loads((repo / "data" / "splits" / "split.json").read_text())
    assert split["labeled"] == ["synla_000", "synla_001"] and len(split["unlabeled"]) == 3
    assert split["test"] == ["synla_005", "synla_006"] and split["val"] == []
    ckpt = torch.load(repo / "models" / "model.pt", weights_only=True)
    assert ckpt["meta"]["method"] == "cvcl" and ckpt["teacher"] is not None
    with open(repo / "models" / "train_log.csv") as f:
        log = list(csv.DictReader(f))
    assert len(log) == 4 and {"loss", "loss_sup", "loss_vcl_l", "lr"} <= set(log[0])
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    for key in ("dice", "jaccard", "hd95", "asd"):
        assert key in metrics and f"{key}_std" in metrics
    with open(repo / "metrics" / "per_case.csv") as f:
        assert [r["case_id"] for r in csv.DictReader(f)] == split["test"]


def test_predictions_are_nifti_in_the_case_geometry(repo):
    for case_id in ("synla_005", "synla_006"):
        pred = nib.load(repo / "predictions" / f"{case_id}.nii.gz")
        image = nib.load(repo / "data" / "raw" / "imagesTr" / f"{case_id}_0000.nii.gz")
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1}
        itk_pred = sitk.ReadImage(str(repo / "predictions" / f"{case_id}.nii.gz"))
        itk_img = sitk.ReadImage(str(repo / "data" / "raw" / "imagesTr" / f"{case_id}_0000.nii.gz"))
        np.testing.assert_allclose(itk_pred.GetOrigin(), itk_img.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(itk_pred.GetDirection(), itk_img.GetDirection(), atol=1e-6)
        np.testing.assert_allclose(itk_pred.GetSpacing(), itk_img.GetSpacing(), atol=1e-6)


def test_plots_render_curves_per_case_dice_and_overlays(repo):
    out = repo.parent / "plots"
    html = run(["dvc", "plots", "show", "-o", str(out)], repo)
    assert (out / "index.html").is_file(), html.stdout
    shown = json.loads(run(["dvc", "plots", "show", "--json", "-o", str(out)], repo).stdout)
    names = set(shown.get("data", shown))
    for name in ("training_loss", "contrast_terms", "schedules", "metrics/per_case.csv"):
        assert name in names, names
    assert any(n.startswith("metrics/overlays/") and n.endswith(".png") for n in names), names
    overlays = sorted(p.name for p in (repo / "metrics" / "overlays").iterdir())
    assert len(overlays) == 2 and overlays[0].startswith(("best-", "median-", "worst-"))


def test_second_repro_runs_nothing(repo):
    out = run(["dvc", "repro"], repo)
    assert ran(out.stdout + out.stderr) == []
    assert "up to date" in (out.stdout + out.stderr).lower()


def test_mlflow_run_has_params_curves_metrics_tags_and_artifacts(repo, monkeypatch):
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cvcl-synthetic-la")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    r = runs[0]
    assert r.info.status == "FINISHED" and r.info.run_name == "cvcl-l2-pcl1-vcl1-s1"
    p = r.data.params
    assert p["labeled"] == "2" and p["method"] == "cvcl" and p["seed"] == "1" and p["train.lr"] == "0.01"
    assert p["infer.stride"] == "[16, 16, 16]" and p["evaluate.distance_unit"] == "voxel"
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    assert r.data.metrics["dice"] == pytest.approx(metrics["dice"])
    assert r.data.metrics["hd95_std"] == pytest.approx(metrics["hd95_std"])
    assert [m.step for m in client.get_metric_history(r.info.run_id, "loss")] == [0, 1, 2, 3]
    assert len(client.get_metric_history(r.info.run_id, "lr")) == 4
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    assert r.data.tags["dataset"] == "synthetic-la" and r.data.tags["method"] == "cvcl"
    assert r.data.tags["git_commit"] == head
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"metrics.json", "per_case.csv", "train_log.csv", "model.pt"} <= artifacts
    # the network as the run's MLflow model, with what cvcl predict needs as metadata
    [output] = client.get_run(r.info.run_id).outputs.model_outputs
    logged = client.get_logged_model(output.model_id)
    assert logged.name == "model" and logged.source_run_id == r.info.run_id
    from mlflow.models import get_model_info

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'mlflow.db'}")
    info = get_model_info(f"runs:/{r.info.run_id}/model")
    meta = info.metadata["cvcl"]
    assert meta["preprocessing"]["dataset"] == "synthetic-la" and meta["preprocessing"]["intensity"]["mask"] == "all"
    assert meta["inference"]["stride"] == [16, 16, 16] and meta["inference"]["patch"] == [32, 32, 16]
    assert meta["method"] == "cvcl" and meta["model_config"]["base_filters"] == 4
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, -1, -1, -1]


def test_exp_run_with_labeled_reruns_only_downstream_stages(repo):
    out = run(["dvc", "exp", "run", "-S", "labeled=3"], repo, timeout=900)
    assert ran(out.stdout + out.stderr) == ["split", "train", "infer", "evaluate"]
    shown = run(["dvc", "exp", "show", "--json"], repo).stdout
    assert '"labeled": 3' in shown.replace(" ", "").replace('"labeled":3', '"labeled": 3')
    table = run(["dvc", "exp", "show", "--csv"], repo).stdout
    header = table.splitlines()[0].split(",")
    for column in ("dice", "jaccard", "hd95", "asd", "labeled", "method"):
        assert column in header, header
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cvcl-synthetic-la")
    runs = {r.data.params["labeled"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"2", "3"}
    new = runs["3"]
    assert new.info.status == "FINISHED" and new.info.run_name == "cvcl-l3-pcl1-vcl1-s1"
    assert new.data.tags.get("dvc_exp_name")  # the experiment DVC named
    assert "dice" in new.data.metrics


def test_the_trained_model_segments_a_scan_in_no_split_through_its_runs_uri(repo, tmp_path):
    """The issue's acceptance: ``cvcl predict --model runs:/<id>/model`` on NIfTI files outside every
    split; the predictions open over their scans (SimpleITK) and follow the training preprocessing."""
    from scipy.spatial.transform import Rotation

    from cvcl.datasets.synthetic_la import SyntheticLAConfig
    from cvcl.datasets.synthetic_la.source import generate_case
    from cvcl.io.volume import nifti_image
    from cvcl.params import load_params

    run_id = json.loads((repo / "models" / "mlflow_run.json").read_text())["run_id"]
    scans, labels = tmp_path / "scans", tmp_path / "labels"
    scans.mkdir()
    labels.mkdir()
    # a new patient: a case the generator makes beyond the dataset, on an oblique, anisotropic grid
    cfg = load_params(repo / "params.yaml").config(SyntheticLAConfig, "download.synthetic")
    image, label = generate_case(40, cfg)
    oblique = np.eye(4)
    oblique[:3, :3] = Rotation.from_euler("xyz", [25, -10, 40], degrees=True).as_matrix() @ np.diag([1.1, 1.3, 1.6])
    oblique[:3, 3] = [-20.0, 15.0, 42.0]
    nib.save(nifti_image(image.astype(np.float32), oblique), str(scans / "new_patient.nii.gz"))
    nib.save(nifti_image(label.astype(np.uint8), oblique), str(labels / "new_patient.nii.gz"))
    # a test case's voxels under another name and a rotated grid: it must get the infer stage's answer
    source = nib.load(repo / "data" / "raw" / "imagesTr" / "synla_005_0000.nii.gz")
    turned = np.eye(4)
    turned[:3, :3] = Rotation.from_euler("z", 30, degrees=True).as_matrix() @ source.affine[:3, :3]
    nib.save(nifti_image(np.asarray(source.dataobj, np.float32), turned), str(scans / "colleague_scan.nii.gz"))
    nib.save(nifti_image(np.zeros(source.shape, np.uint8), turned), str(labels / "colleague_scan.nii.gz"))

    out = run(
        [
            "cvcl",
            "predict",
            "--model",
            f"runs:/{run_id}/model",
            "--input",
            str(scans),
            "--output",
            str(tmp_path / "segs"),
            "--labels",
            str(labels),
        ],
        repo,
    )
    assert "predict: 2 prediction(s)" in out.stdout
    for name in ("new_patient", "colleague_scan"):
        pred = sitk.ReadImage(str(tmp_path / "segs" / f"{name}.nii.gz"))
        scan = sitk.ReadImage(str(scans / f"{name}.nii.gz"))
        assert pred.GetSize() == scan.GetSize()
        np.testing.assert_allclose(pred.GetOrigin(), scan.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(pred.GetSpacing(), scan.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(pred.GetDirection(), scan.GetDirection(), atol=1e-5)
    same = np.asarray(nib.load(tmp_path / "segs" / "colleague_scan.nii.gz").dataobj)
    np.testing.assert_array_equal(same, np.asarray(nib.load(repo / "predictions" / "synla_005.nii.gz").dataobj))
    scored = json.loads((tmp_path / "segs" / "metrics.json").read_text())
    assert scored["n_cases"] == 2 and 0.0 <= scored["dice"] <= 1.0
    with open(tmp_path / "segs" / "per_case.csv") as f:
        assert [r["case_id"] for r in csv.DictReader(f)] == ["colleague_scan", "new_patient"]
