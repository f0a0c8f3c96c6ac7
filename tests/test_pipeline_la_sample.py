"""The whole pipeline through DVC on the real LA sample (12 cases of the release), tiny training.

Slow: about a minute on 2 cores (download from a local mirror, 12 real volumes preprocessed,
4 inferred with a coarse window grid).
"""

import csv
import json

import h5py
import nibabel as nib
import numpy as np
import pytest
from mlflow import MlflowClient

from cvcl.datasets.la import source as la
from cvcl.evaluation.metrics import case_metrics
from tests.conftest import LA_SAMPLE
from tests.helpers import TINY, copy_repository, run, set_params

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="the shared LA sample is not available"),
]
STAGES = ["download", "preprocess", "split", "train", "infer", "evaluate"]


def test_dvc_exp_run_on_the_la_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("CVCL_CACHE_DIR", str(tmp_path / "download-cache"))  # inherited by DVC's stages
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo)
    tiny = {k: v for k, v in TINY.items() if k != "download"}
    # real volumes are about 190x142x88: a larger patch and no window overlap keep inference short
    set_params(repo, {**tiny, "train": {**tiny["train"], "patch": [64, 64, 32]}, "infer": {"stride": [64, 64, 32]}})
    run(["git", "commit", "-q", "-am", "tiny params"], repo)

    proc = run(["dvc", "exp", "run", "-S", "dataset=la", "-S", f"download.mirror={LA_SAMPLE}"], repo, timeout=900)
    log = proc.stdout + proc.stderr
    assert [s for s in STAGES if f"Running stage '{s}'" in log] == STAGES

    lists = {s: (LA_SAMPLE / f"{s}.list").read_text().split() for s in ("train", "test")}
    manifest = la.read_manifest()
    raw = repo / "data" / "raw"
    assert len(list(raw.glob("2018LA_Seg_Training Set/*/mri_norm2.h5"))) == 12
    assert json.loads((raw / "protocol.json").read_text())["lists"] == "ua-mt"
    with open(repo / "data" / "processed" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["spacing"] for r in rows} == {"0.625x0.625x0.625"}

    split = json.loads((repo / "data" / "splits" / "split.json").read_text())
    assert split["protocol"] == "fixed-lists" and split["lists"] == "ua-mt"
    assert split["labeled"] == lists["train"][:2] and split["unlabeled"] == lists["train"][2:]
    assert split["test"] == lists["test"]

    for case_id in lists["test"]:
        pred = nib.load(repo / "predictions" / f"{case_id}.nii.gz")
        assert pred.shape == manifest[case_id].shape
        np.testing.assert_allclose(pred.affine, np.diag([0.625, 0.625, 0.625, 1.0]))
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1}
    metrics = json.loads((repo / "metrics" / "metrics.json").read_text())
    for key in ("dice", "jaccard", "hd95", "asd"):
        assert key in metrics and f"{key}_std" in metrics
    assert 0.0 <= metrics["dice"] <= 100.0
    with open(repo / "metrics" / "per_case.csv") as f:
        assert [r["case_id"] for r in csv.DictReader(f)] == lists["test"]

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cvcl-la").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["dataset"] == "la" and "dice" in runs[0].data.metrics
    assert len(list((tmp_path / "download-cache" / "sha256").glob("*/*"))) == 12

    # preprocess.resample: trained at 1.25 mm, predicted back in the release's 0.625 mm grid and
    # scored there against the release's own labels
    proc = run(
        [
            "dvc",
            "exp",
            "run",
            "-S",
            "dataset=la",
            "-S",
            f"download.mirror={LA_SAMPLE}",
            "-S",
            "preprocess.resample=1.25",
        ],
        repo,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    assert [s for s in STAGES if f"Running stage '{s}'" in log] == STAGES[1:]
    with open(repo / "data" / "processed" / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(abs(float(s) - 1.25) < 0.02 for r in rows for s in r["spacing"].split("x"))
    with open(repo / "metrics" / "per_case.csv") as f:
        per_case = {r["case_id"]: r for r in csv.DictReader(f)}
    for case_id in lists["test"]:
        pred = nib.load(repo / "predictions" / f"{case_id}.nii.gz")
        assert pred.shape == manifest[case_id].shape
        np.testing.assert_allclose(pred.affine, np.diag([0.625, 0.625, 0.625, 1.0]))
        with h5py.File(raw / "2018LA_Seg_Training Set" / case_id / "mri_norm2.h5") as f:
            truth = f["label"][()] > 0
        expected = case_metrics(np.asarray(pred.dataobj) > 0, truth)
        assert float(per_case[case_id]["dice"]) == pytest.approx(expected["dice"], abs=1e-12)
        assert float(per_case[case_id]["true_ml"]) == pytest.approx(truth.sum() * 0.625**3 / 1000)
