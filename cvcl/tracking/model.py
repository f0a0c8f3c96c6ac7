"""Trained networks as MLflow models: logged with each run, read back by URI, registered.

The infer stage logs the network it predicted with as the run's MLflow model ``model``
(:data:`MODEL_NAME`, PyTorch flavour, :class:`cvcl.models.vnet.VNetLogits`: image ``(B, C, X,
Y, Z)`` float32 -> logits ``(B, K, X, Y, Z)``), with a tensor signature and, as metadata under
``cvcl``, everything ``cvcl predict`` needs to use it on a new scan: the preprocessing recipe
(:mod:`cvcl.preprocessing.recipe`), the sliding-window settings of the infer stage, the model
configuration and where it came from. So ``runs:/<run_id>/model`` and, once registered,
``models:/<name>/<version>`` work with ``cvcl predict``, ``mlflow.pytorch.load_model`` and the
model registry alike.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cvcl.errors import DataError
from cvcl.tracking.run import Run
from cvcl.tracking.store import quiet_mlflow_logs, tracking_uri, with_retries

MODEL_NAME = "model"
METADATA_KEY = "cvcl"
URI_SCHEMES = ("runs:/", "models:/")


@contextlib.contextmanager
def _tracking() -> Iterator:
    """MLflow's fluent API pointed at this project's store for the duration, then put back as it
    was (its global URI and ``MLFLOW_TRACKING_URI``, which ``set_tracking_uri`` also writes): a
    caller's own MLflow settings, a test's private store among them, are left alone."""
    quiet_mlflow_logs()
    import mlflow
    from mlflow.tracking._tracking_service import utils

    old_global, old_env = getattr(utils, "_tracking_uri", None), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri())
    try:
        yield mlflow
    finally:
        # None puts back "unset", which MLflow handles though it types the URI as str | Path
        mlflow.set_tracking_uri(old_global)  # type: ignore[arg-type]
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


def log_model(run: Run, network: torch.nn.Module, metadata: dict) -> str:
    """Log ``network`` (a :class:`~cvcl.models.vnet.VNet`) as the run's MLflow model with
    ``metadata`` under ``cvcl`` (:meth:`cvcl.inference.predictor.Predictor.model_metadata`, which
    holds ``model_config``); returns the model's ``models:/<model_id>`` URI.

    The logged model lives in the run's experiment and is linked to the run as its output, so
    ``runs:/<run_id>/model`` finds it and the runs table's Models column shows it.
    """
    from mlflow.models.signature import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from cvcl.models.vnet import VNetLogits

    # Module.to takes memory_format (torch.nn.Module.to's docs); its typed overloads leave it out
    vnet = copy.deepcopy(network).to("cpu", memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
    channels, classes = metadata["model_config"]["in_channels"], metadata["model_config"]["n_classes"]
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1, -1), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes, -1, -1, -1), "logits")]),
    )
    experiment_id = with_retries(lambda: run.client.get_run(run.run_id)).info.experiment_id
    with _tracking() as mlflow:
        # created here, in the run's experiment: the fluent API would put it in the active one
        logged = mlflow.initialize_logged_model(
            name=MODEL_NAME,
            source_run_id=run.run_id,
            experiment_id=experiment_id,
            tags={"cvcl.method": str(metadata.get("method", ""))},
        )
        # pickled, not MLflow's pt2 export: that needs an example input and traces fixed shapes,
        # where a sliding window and the whole-volume use need any size; MLflow warns of pickle
        # each time, which says nothing new to a stage's reader
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        info = mlflow.pytorch.log_model(
            VNetLogits(vnet),
            name=MODEL_NAME,
            model_id=logged.model_id,
            run_id=run.run_id,
            signature=signature,
            metadata={METADATA_KEY: metadata},
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
        )
    return info.model_uri


@dataclass
class MlflowModel:
    """An MLflow model read back: the network (in eval mode, on the CPU) and its ``cvcl`` metadata."""

    network: torch.nn.Module
    metadata: dict
    uri: str


def is_model_uri(text: str) -> bool:
    return text.startswith(URI_SCHEMES)


def load_mlflow_model(uri: str) -> MlflowModel:
    """The model at ``runs:/<run_id>/model`` or ``models:/<name>/<version>`` (also ``@alias``) in
    the tracking store (``MLFLOW_TRACKING_URI`` or the project's ``mlflow.db``). One-line
    :class:`DataError` naming the URI when it does not resolve or was not logged by this project."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with _tracking() as mlflow, tempfile.TemporaryDirectory(prefix="cvcl-model-") as tmp:
        from mlflow.exceptions import MlflowException
        from mlflow.models import Model

        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except (MlflowException, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(uri, f"cannot be read from the tracking store {tracking_uri()} ({first})") from None
        if not (local / "MLmodel").is_file():
            raise DataError(
                uri,
                "is not an MLflow model (no MLmodel file); expected runs:/<run_id>/model or models:/<name>/<version>",
            )
        metadata = (Model.load(str(local)).metadata or {}).get(METADATA_KEY)
        if not metadata:
            raise DataError(uri, "was not logged by this project's infer stage (no 'cvcl' metadata)")
        network = mlflow.pytorch.load_model(str(local), map_location="cpu")
    return MlflowModel(network.eval(), metadata, uri)


# metrics the evaluate stage measures on the test cases: choosing a model by them is selection on
# the test set, which makes that model's test score optimistic
TEST_METRICS = ("dice", "jaccard", "hd95", "asd", "assd")
LOWER_IS_BETTER = ("hd95", "asd", "assd", "loss")


@dataclass
class Registered:
    """A model version created by :func:`register_best`."""

    name: str
    version: str
    run_id: str
    run_name: str
    value: float

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def register_best(
    experiment: str, metric: str, name: str, filter_string: str = "", lower_is_better: bool | None = None
) -> Registered:
    """Register the model of the FINISHED run of ``experiment`` (matching ``filter_string``, MLflow's
    search syntax) with the best ``metric`` as a new version of registered model ``name``.

    ``lower_is_better`` defaults by the metric's name (:data:`LOWER_IS_BETTER`, ``*_std``).
    Runs without the metric or without a logged model are passed over."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri())
    found = with_retries(lambda: client.get_experiment_by_name(experiment))
    if found is None:
        names = [e.name for e in with_retries(lambda: client.search_experiments(max_results=200))]
        raise DataError(experiment, f"no such experiment in {tracking_uri()} (there: {', '.join(names) or 'none'})")
    lower = (
        lower_is_better
        if lower_is_better is not None
        else (metric.split("_std")[0] in LOWER_IS_BETTER or metric.endswith("_std"))
    )
    query = " and ".join(f for f in ("attributes.status = 'FINISHED'", filter_string.strip()) if f)
    from mlflow.exceptions import MlflowException

    try:
        runs = with_retries(
            lambda: client.search_runs(
                [found.experiment_id],
                query,
                order_by=[f"metrics.`{metric}` {'ASC' if lower else 'DESC'}"],
                max_results=1000,
            )
        )
    except MlflowException as exc:
        raise DataError(
            filter_string or experiment, f"is not a usable run filter ({str(exc).splitlines()[0]})"
        ) from None
    scored = [r for r in runs if metric in r.data.metrics]
    if not scored:
        hint = (
            "; runs log val_dice with validation cases: set split.val and train.val_every"
            if metric == "val_dice"
            else ""
        )
        raise DataError(
            experiment,
            f"has no FINISHED run with metric {metric!r}"
            + (f" matching {filter_string!r}" if filter_string else "")
            + hint,
        )
    for run in scored:  # search results carry each run's outputs: no request per run
        if run.outputs is not None and run.outputs.model_outputs:
            with _tracking() as mlflow:
                version = mlflow.register_model(
                    f"runs:/{run.info.run_id}/{MODEL_NAME}",
                    name,
                    tags={"cvcl.selected_by": metric, "cvcl.value": f"{run.data.metrics[metric]:.6g}"},
                )
            return Registered(name, str(version.version), run.info.run_id, run.info.run_name, run.data.metrics[metric])
    raise DataError(
        experiment,
        f"none of its {len(scored)} runs with {metric!r} has a logged model "
        "(runs logged before models were: rerun their infer stage)",
    )
