"""Segmenting scans outside the pipeline's splits with any trained model (``cvcl predict``).

A model comes from a checkpoint (``models/model.pt``) or from MLflow (``runs:/<run_id>/model``,
``models:/<name>/<version>``); either way it brings the preprocessing it was trained with
(:mod:`cvcl.preprocessing.recipe`) and the sliding-window settings it was evaluated with, so a
new scan is normalised, resampled and windowed as the test cases were (:func:`prepare_scan`); the
predictor puts each prediction back into its scan's grid. The loop over the scans, writing each
prediction (:mod:`cvcl.inference.scans`) and scoring it where a reference label is given, is
:func:`cvcl.evaluation.scans.segment_scans`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cvcl.errors import DataError
from cvcl.inference.config import InferConfig, check_window
from cvcl.inference.predictor import Predictor
from cvcl.inference.scans import Scan, read_preprocessed, read_scan
from cvcl.io.resample import resample_case
from cvcl.io.volume import Case
from cvcl.models.checkpoint import load_model
from cvcl.preprocessing.recipe import Recipe, channel_names, prepare, spacing_mismatch
from cvcl.tracking.model import is_model_uri, load_mlflow_model


@dataclass
class TrainedModel:
    """A network with what it was trained and evaluated with: the recipe (None for a model of
    cases written without the preprocess stage: only ``.h5`` inputs then), the window settings,
    and its provenance (``meta``: method, dataset, weights, model_config...)."""

    network: torch.nn.Module
    recipe: Recipe | None
    window: dict
    meta: dict
    source: str
    resample: tuple[float, float, float] | None = None  # mm; the recipe's unless overridden

    def __post_init__(self) -> None:
        if self.resample is None and self.recipe is not None:
            self.resample = self.recipe.resample

    @property
    def channels(self) -> tuple[str, ...]:
        if self.recipe is not None:
            return self.recipe.channels
        return channel_names(int(self.meta["model_config"]["in_channels"]))


def load_trained(spec: str, weights: str | None = None, allow_pickle: bool = False) -> TrainedModel:
    """The model named by ``spec``: a checkpoint path or an MLflow model URI. ``weights``
    (``student``/``teacher``) picks a checkpoint's network; an MLflow model holds one.
    ``allow_pickle`` lets an MLflow model in the pickled ``pytorch`` flavour load (it runs code)."""
    if is_model_uri(spec):
        if weights is not None:
            raise DataError(
                spec,
                f"an MLflow model holds one network (the infer stage's); --weights {weights} "
                "applies to a checkpoint file (models/model.pt)",
            )
        logged = load_mlflow_model(spec, allow_pickle=allow_pickle)
        meta = logged.metadata
        window = dict(meta.get("inference") or {})
        network = logged.network
    else:
        path = Path(spec)
        if not path.is_file():
            raise DataError(
                path,
                "not found; expected a checkpoint (models/model.pt), runs:/<run_id>/model or models:/<name>/<version>",
            )
        network, meta = load_model(path, weights or "student")
        meta = {**meta, "weights": weights or "student"}
        window = {"patch": meta.get("patch")} if meta.get("patch") else {}
    record = meta.get("preprocessing")
    recipe = Recipe.from_dict(record, spec) if record else None
    return TrainedModel(network, recipe, window, meta, spec)


def inference_config(trained: TrainedModel, overrides: dict) -> InferConfig:
    """The model's window settings, then ``overrides`` (None values ignored), over the defaults."""
    names = {f.name for f in fields(InferConfig)}
    values = {**trained.window, **{k: v for k, v in overrides.items() if v is not None}}
    given: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return replace(InferConfig(), **given)


def scan_predictor(trained: TrainedModel, scans: list[Scan], cfg: InferConfig) -> Predictor:
    """``trained``'s network on ``cfg.device``, once the window and the scans are known to suit it
    (ParamError naming ``--patch``/``--stride``; DataError when a raw scan needs a recipe the
    model lacks)."""
    check_window(cfg.patch, cfg.stride, "--patch", "--stride")
    raw = next((scan for scan in scans if scan.kind != "h5"), None)
    if raw is not None and trained.recipe is None:
        raise DataError(
            trained.source,
            f"records no preprocessing (its cases were not made by the preprocess "
            f"stage), so {raw.files[0].name} cannot be prepared; give .h5 processed cases",
        )
    return Predictor.on_device(trained.network, cfg, trained.meta, "--device")


def prepare_scan(
    trained: TrainedModel, scan: Scan, warn: Callable[[str], None] = tqdm.write
) -> tuple[Case, tuple[float, float, float]]:
    """``scan`` as the network's input: a case named ``scan.name`` (image ``(C, X, Y, Z)`` on the
    network grid, its geometry leading back to the scan's own grid) and the scan's voxel size in
    mm. A raw scan gets the model's recipe; an ``.h5`` case is used as it is (resampled when
    training resampled and the file is not). A spacing far from training's goes to ``warn``."""
    if scan.kind == "h5":
        case = read_preprocessed(scan, len(trained.channels))
        if trained.resample is not None and not case.geometry.resampled:
            case = resample_case(case, trained.resample)
        spacing = case.source_grid()[1]
    else:
        image, geometry = read_scan(scan, trained.channels)
        assert trained.recipe is not None  # a raw scan needs the recipe: make_predictor refuses a model without one
        recipe = replace(trained.recipe, resample=trained.resample)
        if message := spacing_mismatch(recipe, geometry.spacing):
            warn(f"warning: {scan.files[0]}: {message}")
        case = prepare(image, geometry, recipe, scan.name)
        spacing = geometry.spacing
    x, y, z = (float(s) for s in spacing)
    return replace(case, case_id=scan.name), (x, y, z)
