"""The one predict-then-score loop: segment each case, score it against its reference.

Every place that turns cases into metrics goes through :func:`predict_and_score`: validation
Dice during training (:mod:`cvcl.training.validation`), the evaluate stage
(:mod:`cvcl.evaluation.cases`, which reads the infer stage's files instead of running a
network), ``cvcl predict --labels`` (:mod:`cvcl.evaluation.scans`) and
``benchmarks/gpu_check.py``. They differ only in what segments a case and on which grid the
reference lies; the loop, the binarisation and the per-case row (:func:`case_row`) are one.

The loop lives in evaluation, not inference: its product is metrics, and inference never
scores. It names no network: whatever segments a case is a :class:`Segmenter` (a network's
sliding-window :class:`cvcl.inference.predictor.Predictor`, or :class:`WrittenPredictions`), so
the evaluate stage imports neither torch nor the inference package.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from cvcl.entrypoint import raise_if_terminating
from cvcl.errors import DataError
from cvcl.evaluation.summary import case_row
from cvcl.io.volume import Case, Grid, from_original_grid, read_nifti


class Segmenter(Protocol):
    """Anything that gives a case's label map on one of its grids."""

    def segment(self, case: Case, grid: Grid) -> np.ndarray:
        """The label map ``(X, Y, Z)`` of ``case`` on ``grid`` (:data:`cvcl.io.volume.Grid`);
        non-zero is foreground."""
        ...


@dataclass(frozen=True)
class ScoringCase:
    """A case to segment, and the reference to score it against.

    ``case`` is what the segmenter reads: ``case.image`` ``(C, X, Y, Z)`` float32 on the network
    grid (empty where predictions are read from files) and ``case.geometry``, which leads to the
    other grids; ``case.case_id`` names the row. ``reference`` is the label ``(X, Y, Z)`` on
    ``grid`` (non-zero is foreground), or None to segment without scoring; ``spacing`` is that
    grid's voxel size in mm (volumes always use it, distances when the unit is mm);
    ``reference_file``, where the reference was read from, is what an error about it names.
    """

    case: Case
    reference: np.ndarray | None
    spacing: tuple[float, float, float]
    grid: Grid = "network"
    reference_file: Path | None = None

    @classmethod
    def on_grid(cls, case: Case, grid: Grid) -> ScoringCase:
        """``case`` scored against its own label: on the network grid (``case.label``), or on
        the source grid (``case.source_label`` when resampled: read it with
        ``read_case(..., load_source_label=True)``)."""
        if grid == "network":
            return cls(case, case.label, case.geometry.spacing, grid)
        if grid == "source":
            _, spacing, label = case.source_grid()
            return cls(case, label, spacing, grid)
        raise ValueError(f"a processed case holds no label on the {grid} grid; give the reference itself")


@dataclass(frozen=True)
class Scored:
    """One case through the loop: its prediction ``(X, Y, Z)`` on ``item.grid`` and, when it
    has a reference, its row (:func:`cvcl.evaluation.summary.case_row`), else None."""

    item: ScoringCase
    prediction: np.ndarray
    row: dict | None

    @property
    def name(self) -> str:
        return self.item.case.case_id


def predict_and_score(
    segmenter: Segmenter,
    cases: Iterable[ScoringCase],
    distance_unit: str = "voxel",
    *,
    progress: bool = False,
    desc: str = "predict",
    unit: str = "case",
    total: int | None = None,
) -> Iterator[Scored]:
    """Segment every case in order and score those with a reference, one case at a time.

    A generator, so that ``cases`` may read each volume only when its turn comes and a caller
    may write each prediction before the next is made (a folder of scans never sits in memory
    whole). ``distance_unit`` (``"voxel"`` or ``"mm"``) is the unit of HD95 and ASD;
    ``progress`` shows a bar named ``desc`` counting ``unit``s (``total`` of them).
    Raises :class:`cvcl.errors.DataError` when a reference and its prediction differ in shape.
    """
    for item in tqdm(cases, desc=desc, unit=unit, total=total, disable=not progress):
        raise_if_terminating()
        prediction = segmenter.segment(item.case, item.grid)
        row = None
        if item.reference is not None:
            if item.reference.shape != prediction.shape:
                raise DataError(
                    item.reference_file or item.case.case_id,
                    f"label shape {item.reference.shape} differs from its prediction's {prediction.shape} "
                    f"({item.grid} grid)",
                )
            row = case_row(item.case.case_id, prediction > 0, item.reference > 0, item.spacing, distance_unit)
        yield Scored(item, prediction, row)


def score_rows(
    segmenter: Segmenter,
    cases: Iterable[ScoringCase],
    distance_unit: str = "voxel",
    *,
    progress: bool = False,
    desc: str = "predict",
    total: int | None = None,
) -> list[dict]:
    """The rows of :func:`predict_and_score` for cases that all have a reference, in order."""
    rows = []
    for scored in predict_and_score(segmenter, cases, distance_unit, progress=progress, desc=desc, total=total):
        if scored.row is None:
            raise ValueError(f"case {scored.name} has no reference to score against")
        rows.append(scored.row)
    return rows


class WrittenPredictions:
    """The infer stage's predictions as a :class:`Segmenter`: ``<folder>/<case_id>.nii.gz``,
    written in each case's original grid, read back and cut to the grid asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def segment(self, case: Case, grid: Grid) -> np.ndarray:
        """The binary prediction ``(X, Y, Z)`` of ``case`` on the source or original grid
        (a file holds no network-grid prediction of a resampled case)."""
        path = self.folder / f"{case.case_id}.nii.gz"
        data, _ = read_nifti(path)
        if grid == "source":
            try:
                data = from_original_grid(data, case.geometry, case.source_grid()[0])
            except ValueError as exc:
                raise DataError(path, str(exc)) from None
        elif grid != "original":
            raise ValueError(f"written predictions are on the original grid, not the {grid} grid")
        return data > 0.5
