"""Scoring the pipeline's predictions case by case, at the source resolution.

Each prediction (written by ``infer`` in the original volume's grid) is cut back to the case's
source grid and scored against the case's label there (the label before
``preprocess.resample``, as nnU-Net does), so the figures are in the published tables' units.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from cvcl import workspace
from cvcl.errors import DataError
from cvcl.evaluation.overlays import pick_cases, save_overlay
from cvcl.evaluation.scoring import ScoringCase, WrittenPredictions, score_rows
from cvcl.io.resample import resize_image
from cvcl.io.volume import read_case


def _test_cases(case_ids: list[str], processed: Path) -> Iterator[ScoringCase]:
    """Each case's geometry and source-grid label, read when the loop reaches it (no image)."""
    for case_id in case_ids:
        path = workspace.case_file(case_id, processed)
        # the row and the prediction file are named by the split's id, whatever the file says
        case = replace(read_case(path, load_image=False, load_source_label=True), case_id=case_id)
        if case.source_grid()[2] is None:
            raise DataError(path, "has no label to evaluate against")
        yield ScoringCase.on_grid(case, "source")


def score_cases(
    case_ids: list[str], processed: Path, predictions: Path, unit: str, progress: bool = True
) -> list[dict]:
    """One row of metrics per case (:func:`cvcl.evaluation.summary.case_row`), in ``case_ids`` order:
    ``predictions/<case_id>.nii.gz`` against the case's label on the source grid."""
    return score_rows(
        WrittenPredictions(predictions),
        _test_cases(case_ids, processed),
        unit,
        progress=progress,
        desc="evaluate",
        total=len(case_ids),
    )


def write_overlays(rows: list[dict], processed: Path, predictions: Path, folder: Path) -> None:
    """Axial slices of the best, median and worst case into ``folder`` (one PNG each)."""
    written = WrittenPredictions(predictions)
    for rank, row in pick_cases(rows).items():
        case = replace(
            read_case(workspace.case_file(row["case_id"], processed), load_source_label=True), case_id=row["case_id"]
        )
        pred = written.segment(case, "source")
        image = case.image
        shape, _, label = case.source_grid()
        assert label is not None  # read with load_source_label=True
        if case.geometry.resampled:  # shown on the grid the metrics were computed on
            image = resize_image(image, shape)
        save_overlay(
            folder / f"{rank}-{row['case_id']}.png",
            image,
            label > 0,
            pred,
            f"{rank}: {row['case_id']}, Dice {100 * row['dice']:.1f}%",
        )
