"""Trained networks as MLflow models: logged with each run, read back by URI, registered.

The infer stage logs the network it predicted with as the run's MLflow model ``model``
(:data:`MODEL_NAME`) in the project's own flavour (:mod:`cvcl.tracking.weights_flavor`): the
V-Net's weights as tensors plus, as JSON and as metadata under ``cvcl``, everything ``cvcl
predict`` needs to use it on a new scan: the model configuration it is rebuilt from, the
preprocessing recipe (:mod:`cvcl.preprocessing.recipe`), the sliding-window settings of the infer
stage and where it came from. It has a tensor signature (image ``(B, C, X, Y, Z)`` float32 ->
logits ``(B, K, X, Y, Z)``). ``runs:/<run_id>/model`` and, once registered,
``models:/<name>/<version>`` (or ``@alias``) work with ``cvcl predict``, ``mlflow.pyfunc`` and
the model registry alike.

Reading a model runs no code that came with it: a model in MLflow's pickled ``pytorch`` flavour
(what this project logged before, or what anyone with EDIT rights can log) is refused unless the
caller opts in (``allow_pickle``; ``cvcl predict --allow-pickle``, docs/security.md).
"""

from __future__ import annotations

import contextlib
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
    was, through public API only: ``MLFLOW_TRACKING_URI`` (which the fluent API reads when no URI
    was set in-process) and, where a caller did set one that differs, ``set_tracking_uri`` and back.
    A caller's own MLflow settings, a test's private store among them, are left alone."""
    quiet_mlflow_logs()
    import mlflow

    ours, old_env = tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = ours
    previous = mlflow.get_tracking_uri()  # a URI set in-process wins over the environment
    if previous != ours:
        mlflow.set_tracking_uri(ours)
    try:
        yield mlflow
    finally:
        if previous != ours:
            mlflow.set_tracking_uri(previous)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


def log_model(run: Run, network: torch.nn.Module, metadata: dict) -> str:
    """Log ``network`` (a :class:`~cvcl.models.vnet.VNet`) as the run's MLflow model, as weights
    with ``metadata`` (:meth:`cvcl.inference.predictor.Predictor.model_metadata`, which holds
    ``model_config``) under ``cvcl``; returns the model's ``models:/<model_id>`` URI.

    The logged model lives in the run's experiment and is linked to the run as its output, so
    ``runs:/<run_id>/model`` finds it and the runs table's Models column shows it.
    """
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from cvcl.tracking import weights_flavor

    channels, classes = metadata["model_config"]["in_channels"], metadata["model_config"]["n_classes"]
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1, -1), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes, -1, -1, -1), "logits")]),
    )
    state = {k: v for k, v in network.state_dict().items() if not k.startswith("projection.")}
    experiment_id = with_retries(lambda: run.client.get_run(run.run_id)).info.experiment_id
    with _tracking() as mlflow:
        # created here, in the run's experiment: the fluent API would put it in the active one
        logged = mlflow.initialize_logged_model(
            name=MODEL_NAME,
            source_run_id=run.run_id,
            experiment_id=experiment_id,
            tags={"cvcl.method": str(metadata.get("method", ""))},
        )
        info = Model.log(
            artifact_path=None,
            name=MODEL_NAME,
            flavor=weights_flavor,
            model_id=logged.model_id,
            run_id=run.run_id,
            signature=signature,
            metadata={METADATA_KEY: {**metadata, "format_version": weights_flavor.FORMAT_VERSION}},
            state_dict=state,
            cvcl_metadata=metadata,
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


PICKLE_REFUSED = (
    "is a pickled PyTorch model (MLflow's pytorch flavour): loading it would run whatever code it "
    "carries; re-log it as weights (cvcl relog; docs/security.md) or pass --allow-pickle if you "
    "trust whoever logged it"
)


def check_model_flavor(uri: str, allow_pickle: bool = False) -> str:
    """The flavour ``cvcl`` would read the model at ``uri`` by (reading its MLmodel only):
    :data:`~cvcl.tracking.weights_flavor.FLAVOR_NAME`, or ``pytorch`` with ``allow_pickle``.
    One-line :class:`DataError` naming the URI otherwise."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from cvcl.tracking.weights_flavor import FLAVOR_NAME

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        with _tracking():
            flavors = Model.load(uri).flavors
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(uri, f"cannot be read from the tracking store {tracking_uri()} ({first})") from None
    if FLAVOR_NAME in flavors:
        return FLAVOR_NAME
    if "pytorch" in flavors:
        if allow_pickle:
            return "pytorch"
        raise DataError(uri, PICKLE_REFUSED)
    raise DataError(uri, f"was not logged by this project's infer stage (flavours: {', '.join(flavors) or 'none'})")


def load_mlflow_model(uri: str, allow_pickle: bool = False) -> MlflowModel:
    """The model at ``runs:/<run_id>/model`` or ``models:/<name>/<version>`` (also ``@alias``) in
    the tracking store (``MLFLOW_TRACKING_URI`` or the project's ``mlflow.db``), rebuilt from its
    weights and ``model_config``. One-line :class:`DataError` naming the URI when it does not
    resolve, was not logged by this project, or is a pickle (unless ``allow_pickle``: models
    logged before the weights flavour, from a store whose writers you trust)."""
    from cvcl.tracking import weights_flavor

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # decided on the MLmodel alone, before anything else of the model is downloaded
    flavor = check_model_flavor(uri, allow_pickle)
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
        if flavor == weights_flavor.FLAVOR_NAME:
            network, metadata = weights_flavor.load_network(local, uri)
            return MlflowModel(network, metadata, uri)
        pickled_metadata = (Model.load(str(local)).metadata or {}).get(METADATA_KEY)
        if not pickled_metadata:
            raise DataError(uri, "was not logged by this project's infer stage (no 'cvcl' metadata)")
        network = mlflow.pytorch.load_model(str(local), map_location="cpu")  # the opt-in: a trusted pickle
    return MlflowModel(network.eval(), pickled_metadata, uri)


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
    experiment: str,
    metric: str,
    name: str,
    filter_string: str = "",
    lower_is_better: bool | None = None,
    allow_pickle: bool = False,
) -> Registered:
    """Register the model of the FINISHED run of ``experiment`` (matching ``filter_string``, MLflow's
    search syntax) with the best ``metric`` as a new version of registered model ``name``.

    ``lower_is_better`` defaults by the metric's name (:data:`LOWER_IS_BETTER`, ``*_std``).
    Runs without the metric or without a logged model are passed over. A pickled model is refused
    (:func:`check_model_flavor`) unless ``allow_pickle``: registering it would hand it to everyone
    who trusts the registry."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri())
    found = with_retries(lambda: client.get_experiment_by_name(experiment))
    if found is None:
        names = [e.name for e in with_retries(lambda: client.search_experiments(max_results=200))]
        raise DataError(experiment, f"no such experiment in {tracking_uri()} (there: {', '.join(names) or 'none'})")
    lower = (
        lower_is_better
        if lower_is_better is not None
        else (metric.removesuffix("_last").split("_std")[0] in LOWER_IS_BETTER or "_std" in metric)
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
            check_model_flavor(f"runs:/{run.info.run_id}/{MODEL_NAME}", allow_pickle)
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
