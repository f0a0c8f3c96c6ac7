"""Scoring the pipeline's predictions case by case, at the source resolution.

Each prediction (written by ``infer`` in the original volume's grid) is cut back to the case's
source grid and scored against the case's label there (the label before
``preprocess.resample``, as nnU-Net does), so the figures are in the published tables' units.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from cvcl import workspace
from cvcl.errors import DataError
from cvcl.evaluation.overlays import pick_cases, save_overlay
from cvcl.evaluation.summary import case_row
from cvcl.io.resample import resize_image
from cvcl.io.formats import VOLUME_SUFFIXES, read_volume
from cvcl.io.volume import Case, from_original_grid, read_case, read_nifti


def prediction_on_source_grid(path: Path, case: Case) -> np.ndarray:
    """The binary prediction at ``path`` on the grid of the label it is scored against ``(X, Y, Z)``."""
    data, _ = read_nifti(path)
    try:
        data = from_original_grid(data, case.geometry, case.source_grid()[0])
    except ValueError as exc:
        raise DataError(path, str(exc)) from None
    return data > 0.5


def score_cases(case_ids: list[str], processed: Path, predictions: Path, unit: str,
                progress: bool = True) -> list[dict]:
    """One row of metrics per case (:func:`cvcl.evaluation.summary.case_row`), in ``case_ids`` order."""
    rows = []
    for case_id in tqdm(case_ids, desc="evaluate", unit="case", disable=not progress):
        path = workspace.case_file(case_id, processed)
        case = read_case(path, load_image=False, load_source_label=True)
        _, spacing, truth = case.source_grid()
        if truth is None:
            raise DataError(path, "has no label to evaluate against")
        pred = prediction_on_source_grid(predictions / f"{case_id}.nii.gz", case)
        rows.append(case_row(case_id, pred, truth > 0, spacing, unit))
    return rows


def write_overlays(rows: list[dict], processed: Path, predictions: Path, folder: Path) -> None:
    """Axial slices of the best, median and worst case into ``folder`` (one PNG each)."""
    for rank, row in pick_cases(rows).items():
        case = read_case(workspace.case_file(row["case_id"], processed), load_source_label=True)
        pred = prediction_on_source_grid(predictions / f"{row['case_id']}.nii.gz", case)
        image = case.image
        if case.geometry.resampled:  # shown on the grid the metrics were computed on
            image = resize_image(image, case.geometry.source_shape)
        save_overlay(folder / f"{rank}-{row['case_id']}.png", image, case.source_grid()[2] > 0, pred,
                     f"{rank}: {row['case_id']}, Dice {100 * row['dice']:.1f}%")


def find_references(names: list[str], folder: Path) -> dict[str, Path]:
    """The reference label of each scan name in ``folder``: ``<name>.nii.gz``, ``.nii`` or
    ``.nrrd`` (``cvcl predict --labels``); DataError naming the first one missing."""
    found = {}
    for name in names:
        paths = [folder / f"{name}{suffix}" for suffix in VOLUME_SUFFIXES]
        path = next((p for p in paths if p.is_file()), None)
        if path is None:
            raise DataError(paths[0], f"not found: no reference label for scan {name} (.nii.gz, .nii or .nrrd)")
        found[name] = path
    return found


def score_predictions(predictions: dict[str, tuple[Path, tuple[float, float, float]]],
                      references: dict[str, Path], unit: str) -> list[dict]:
    """One row per scan (:func:`cvcl.evaluation.summary.case_row`) scoring the prediction file
    against its reference on the scan's grid; ``predictions`` maps a name to (file, spacing mm)."""
    rows = []
    for name, (path, spacing) in predictions.items():
        pred, truth = read_volume(path)[0] > 0.5, read_volume(references[name])[0]
        if truth.shape != pred.shape:
            raise DataError(references[name], f"label shape {truth.shape} differs from its scan's {pred.shape}")
        rows.append(case_row(name, pred, truth > 0, spacing, unit))
    return rows
