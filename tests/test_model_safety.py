"""Nothing read from the tracking store runs as code: a logged model is weights rebuilt from its
``model_config``; a pickled "model" (what anyone with EDIT rights can log, with the project's
metadata) is refused by ``cvcl predict`` and ``cvcl register`` with one line, and its payload never
runs; models logged as pickles before the weights flavour still load with ``--allow-pickle``."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from cvcl.models.config import ModelConfig, build_model
from cvcl.tracking.model import load_mlflow_model, log_model
from cvcl.tracking.run import stage_status, start_run
from cvcl.tracking.weights_flavor import FLAVOR_NAME
from tests.helpers import env

CONFIG = ModelConfig(in_channels=1, n_classes=2, base_filters=2, embed_dim=8)
WINDOW = {"patch": [32, 32, 16], "stride": [16, 16, 16]}  # instance norm needs a bottleneck above one voxel


class Trap(torch.nn.Module):
    """A "model" whose unpickling creates ``marker``: what a hostile teammate could log."""

    def __init__(self, marker: pathlib.Path) -> None:
        super().__init__()
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))

    def forward(self, x):
        return x


def _metadata() -> dict:
    return {
        "method": "supervised",
        "dataset": "synthetic-la",
        "weights": "student",
        "model_config": CONFIG.as_dict(),
        "preprocessing": None,
        "inference": WINDOW,
    }


def _log_pickle(network: torch.nn.Module, name: str) -> str:
    """Log ``network`` as MLflow's pickled pytorch flavour with the project's metadata, as the
    project did before the weights flavour (or as anyone with EDIT rights can); its run id."""
    import mlflow

    run = start_run("synthetic-la", name, {"method": "supervised", "labeled": "2", "seed": "1"}, {})
    with stage_status(run):
        run.log_metrics({"val_dice": 0.99})
    with mlflow.start_run(run_id=run.run_id):
        mlflow.pytorch.log_model(
            network,
            name="model",
            metadata={"cvcl": _metadata()},
            serialization_format="pickle",
            pip_requirements=["torch"],  # nothing inferred: logging alone must not load it
        )
    return run.run_id


def _cvcl(args: list[str], store: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "cvcl"), *args],
        cwd=cwd,
        env={**env(), "MLFLOW_TRACKING_URI": store},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def scan(tmp_path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "scan.h5"
    from cvcl.io.volume import Case, Geometry, write_case

    image = rng.standard_normal((1, 32, 32, 16)).astype(np.float32)
    write_case(path, Case("scan", image, None, Geometry.from_spacing((1, 1, 1))))
    return path


def test_a_pickled_model_is_refused_by_predict_and_register_and_never_runs(tmp_path, mlflow_store, scan):
    marker = tmp_path / "pwned"
    run_id = _log_pickle(Trap(marker), "hostile")
    assert not marker.exists(), "logging alone unpickled it: the test would prove nothing"

    predicted = _cvcl(
        ["predict", "--model", f"runs:/{run_id}/model", "--input", str(scan), "--output", str(tmp_path / "out")],
        mlflow_store,
        tmp_path,
    )
    assert predicted.returncode != 0
    lines = predicted.stderr.strip().splitlines()
    assert len(lines) == 1 and f"runs:/{run_id}/model" in lines[0] and "pickle" in lines[0], predicted.stderr
    assert "--allow-pickle" in lines[0]

    registered = _cvcl(
        ["register", "--experiment", "cvcl-synthetic-la", "--name", "trap", "--metric", "val_dice"],
        mlflow_store,
        tmp_path,
    )
    assert registered.returncode != 0
    assert "pickle" in registered.stderr and len(registered.stderr.strip().splitlines()) == 1, registered.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    from mlflow import MlflowClient

    assert MlflowClient().search_registered_models() == []


def test_weights_that_are_a_pickle_are_refused_by_weights_only(tmp_path, mlflow_store):
    """The project's own flavour with ``weights.pt`` replaced by a pickled object: torch's
    weights-only reader refuses it before it runs."""
    import mlflow

    marker = tmp_path / "pwned"
    run = start_run("synthetic-la", "weights", {}, {})
    with stage_status(run):
        log_model(run, build_model(CONFIG, with_projection=False), _metadata())
    local = pathlib.Path(mlflow.artifacts.download_artifacts(f"runs:/{run.run_id}/model", dst_path=str(tmp_path / "m")))
    torch.save({"w": Trap(marker)}, local / "data" / "weights.pt")
    with mlflow.start_run(run_id=run.run_id):
        mlflow.log_artifacts(str(local), "forged")
    with pytest.raises(Exception, match="not plain tensors"):
        load_mlflow_model(f"runs:/{run.run_id}/forged")
    assert not marker.exists()


def test_the_logged_model_is_weights_and_loads_as_the_same_network(tmp_path, mlflow_store):
    import mlflow

    torch.manual_seed(0)
    network = build_model(CONFIG, with_projection=False).eval()
    run = start_run("synthetic-la", "weights", {}, {})
    with stage_status(run):
        log_model(run, network, _metadata())
    uri = f"runs:/{run.run_id}/model"
    local = pathlib.Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "m")))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert FLAVOR_NAME in mlmodel["flavors"] and "pytorch" not in mlmodel["flavors"]
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "cvcl.tracking.weights_flavor"
    assert not list(local.rglob("*.pkl")) and not (local / "data" / "model.pth").exists()

    loaded = load_mlflow_model(uri)
    x = torch.randn(1, 1, 32, 32, 16)
    with torch.no_grad():
        want = network(x).logits
        assert torch.equal(loaded.network(x).logits, want)
    assert loaded.metadata["model_config"] == CONFIG.as_dict()
    # MLflow's generic loader imports the installed loader module by name, no code from the store
    pyfunc = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(pyfunc.predict(x.numpy()), want.numpy(), rtol=1e-6, atol=1e-6)


def test_a_model_logged_as_a_pickle_before_still_loads_with_the_opt_in(tmp_path, mlflow_store, scan):
    from cvcl.models.vnet import VNetLogits

    run_id = _log_pickle(VNetLogits(build_model(CONFIG, with_projection=False).eval()), "old")
    uri = f"runs:/{run_id}/model"
    with pytest.raises(Exception, match="--allow-pickle"):
        load_mlflow_model(uri)
    loaded = load_mlflow_model(uri, allow_pickle=True)
    assert loaded.metadata["model_config"] == CONFIG.as_dict()
    done = _cvcl(
        ["predict", "--model", uri, "--allow-pickle", "--input", str(scan), "--output", str(tmp_path / "out")],
        mlflow_store,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "scan.nii.gz").is_file()


def test_relog_turns_an_old_pickled_model_into_weights_in_its_run(tmp_path, mlflow_store, scan):
    from cvcl.models.vnet import VNetLogits

    torch.manual_seed(1)
    network = build_model(CONFIG, with_projection=False).eval()
    run_id = _log_pickle(VNetLogits(network), "old")
    uri = f"runs:/{run_id}/model"
    refused = _cvcl(["relog", "--model", uri], mlflow_store, tmp_path)
    assert refused.returncode == 2 and "--allow-pickle" in refused.stderr
    done = _cvcl(["relog", "--model", uri, "--allow-pickle"], mlflow_store, tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = load_mlflow_model(uri)  # no opt-in any more: the run's model is now the weights
    x = torch.randn(1, 1, 32, 32, 16)
    with torch.no_grad():
        assert torch.equal(loaded.network(x).logits, network(x).logits)
    assert loaded.metadata["inference"] == WINDOW
