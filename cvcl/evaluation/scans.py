"""``cvcl predict``'s loop: segment new scans, write each prediction in its scan's own grid and
format, and score it where a reference label is given (``--labels``).

It is the predict-then-score loop (:func:`cvcl.evaluation.scoring.predict_and_score`) on the
original grid, fed one scan at a time: a scan is read and prepared (:mod:`cvcl.inference.segment`)
only when its turn comes, and its prediction is written before the next is made, so a folder of
scans never sits in memory whole and a failing scan leaves the finished predictions written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from cvcl.errors import DataError
from cvcl.evaluation.scoring import ScoringCase, predict_and_score
from cvcl.inference.config import InferConfig
from cvcl.inference.scans import Scan, write_prediction
from cvcl.inference.segment import TrainedModel, prepare_scan, scan_predictor
from cvcl.io.formats import VOLUME_SUFFIXES, read_volume
from cvcl.io.volume import original_affine


@dataclass(frozen=True)
class Segmented:
    """A written prediction: its scan's name, the file, the scan's voxel size (mm), and its row of
    metrics (:func:`cvcl.evaluation.summary.case_row`) when the scan has a reference label."""

    name: str
    path: Path
    spacing: tuple[float, float, float]
    row: dict | None = None


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


def segment_scans(
    trained: TrainedModel,
    scans: list[Scan],
    output: Path,
    cfg: InferConfig,
    references: dict[str, Path] | None = None,
    distance_unit: str = "mm",
    progress: bool = True,
    warn: Callable[[str], None] = tqdm.write,
) -> list[Segmented]:
    """Predict every scan into ``output`` (created if needed), in order, and score each against
    ``references[scan.name]`` when given (on the scan's grid; HD95 and ASD in ``distance_unit``).
    Warnings (a spacing far from training's) go to ``warn``."""
    predictor = scan_predictor(trained, scans, cfg)
    output.mkdir(parents=True, exist_ok=True)
    by_name = {scan.name: scan for scan in scans}

    def cases() -> Iterator[ScoringCase]:
        for scan in scans:
            case, spacing = prepare_scan(trained, scan, warn)
            reference = references.get(scan.name) if references is not None else None
            label = read_volume(reference)[0] if reference is not None else None
            yield ScoringCase(case, label, spacing, "original", reference)

    done = []
    for scored in predict_and_score(
        predictor, cases(), distance_unit, progress=progress, desc="predict", unit="scan", total=len(scans)
    ):
        scan = by_name[scored.name]
        path = write_prediction(scan, output, scored.prediction, original_affine(scored.item.case.geometry))
        done.append(Segmented(scan.name, path, scored.item.spacing, scored.row))
    return done
