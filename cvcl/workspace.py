"""The files the stages hand each other: where each lives in a project, and how it is read.

One place for the contracts between stages, so that a stage, a benchmark or a test never
spells a path or parses a shared file on its own (``dvc.yaml`` declares the same paths;
``tests/test_workspace.py`` checks that they agree):

- ``data/raw/``: the dataset in its native form, plus ``train.list``/``test.list`` (``val.list``)
  and ``protocol.json`` (:mod:`cvcl.sources.protocol`);
- ``data/processed/``: one ``<case_id>.h5`` per case (:mod:`cvcl.io.volume`), ``manifest.csv``
  (one row per case), ``preprocessing.json`` (the recipe a new scan must follow) and the lists
  and ``protocol.json`` copied from ``data/raw``;
- ``data/splits/split.json``: the case ids of each subset (:mod:`cvcl.data.split`);
- ``models/``: the checkpoint, the training curves, and the MLflow run the later stages log to;
- ``predictions/``, ``metrics/``: what ``infer`` and ``evaluate`` write (a ``best_val`` run's
  last-iteration predictions in ``predictions/last_iteration/``, scored into
  ``metrics/per_case_last.csv`` and the ``*_last`` metrics).

Paths are relative to the project root, where DVC runs the stages.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cvcl.errors import DataError

RAW = Path("data/raw")
PROCESSED = Path("data/processed")
RECIPE = PROCESSED / "preprocessing.json"  # how cases were made: cvcl.preprocessing.recipe
SPLIT = Path("data/splits/split.json")
MODEL = Path("models/model.pt")
TRAIN_LOG = Path("models/train_log.csv")
VAL_LOG = Path("models/val_log.csv")
TRAIN_RUN = Path("models/mlflow_run.json")  # the MLflow run train opened; infer logs to it
INFER_RUN = Path("models/mlflow_run_infer.json")  # the same run, after infer; evaluate logs to it
PREDICTIONS = Path("predictions")
# a best_val run's last-iteration predictions, beside the chosen model's (issue 27: both reported)
PREDICTIONS_LAST = PREDICTIONS / "last_iteration"
CHECKPOINT_INFO = PREDICTIONS / "checkpoint.json"  # which training steps the predictions come from
METRICS = Path("metrics/metrics.json")
PER_CASE = Path("metrics/per_case.csv")
PER_CASE_LAST = Path("metrics/per_case_last.csv")  # the last iteration's weights (= per_case.csv unless best_val)
OVERLAYS = Path("metrics/overlays")

LIST_NAMES = ("train.list", "val.list", "test.list")
PROTOCOL_FILE = "protocol.json"  # which lists fix the split and where they came from
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ["case_id", "subset", "shape", "spacing", "source", "dataset"]
SPLIT_KEYS = ("labeled", "unlabeled", "val", "test")


def case_file(case_id: str, processed: str | Path = PROCESSED) -> Path:
    """The processed file of one case."""
    return Path(processed) / f"{case_id}.h5"


def parse_ids(text: str, where: str) -> list[str]:
    """Case ids of one list, one a line (blank lines ignored); a case listed twice is an error
    naming ``where``."""
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    seen: set[str] = set()
    for case_id in ids:
        if case_id in seen:
            raise DataError(where, f"lists case {case_id} twice")
        seen.add(case_id)
    return ids


def read_list(path: str | Path) -> list[str]:
    """Case ids of a ``train.list``/``val.list``/``test.list`` file, in order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found")
    try:
        return parse_ids(path.read_text(), str(path))
    except UnicodeDecodeError:
        raise DataError(path, "is not a text file of case ids") from None


def write_manifest(folder: Path, rows: list[dict]) -> None:
    """``manifest.csv`` of a processed folder being written (``folder`` is not yet in place)."""
    with open(folder / MANIFEST, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(processed: str | Path = PROCESSED) -> list[dict[str, str]]:
    """Rows of ``manifest.csv`` in the processed folder, one per case."""
    path = Path(processed) / MANIFEST
    if not path.is_file():
        raise DataError(path, "not found; run the preprocess stage first")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _read_record(path: Path) -> dict | None:
    """A JSON object file (None when there is none); DataError naming it when it is not one."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(path, "is not valid JSON") from None
    if not isinstance(record, dict):
        raise DataError(path, "expected a JSON object")
    return record


def read_protocol(folder: str | Path) -> dict:
    """The ``protocol.json`` record of a raw or processed folder ({} when there is none)."""
    return _read_record(Path(folder) / PROTOCOL_FILE) or {}


def read_recipe(processed: str | Path = PROCESSED) -> dict | None:
    """The preprocess stage's ``preprocessing.json`` (:mod:`cvcl.preprocessing.recipe`), or None
    for processed cases written otherwise."""
    return _read_record(Path(processed) / RECIPE.name)


def training_cases(processed: str | Path = PROCESSED) -> int | None:
    """Number of cases in the processed ``train.list`` (None before preprocessing or without lists)."""
    listing = Path(processed) / "train.list"
    return len(read_list(listing)) if listing.is_file() else None


def read_split(path: str | Path = SPLIT) -> dict:
    """``split.json``: ``labeled``, ``unlabeled``, ``val``, ``test`` (case ids) and how the split
    was made (``protocol``, ``lists``, ``seed``, ``fallback``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found; run the split stage first")
    try:
        split = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(path, "is not valid JSON; run the split stage again") from None
    missing = [k for k in SPLIT_KEYS if not isinstance(split.get(k), list)] if isinstance(split, dict) else SPLIT_KEYS
    if missing:
        raise DataError(path, f"has no list {missing[0]!r}; run the split stage again")
    return split


def read_checkpoint_info(predictions: Path = PREDICTIONS) -> dict:
    """``predictions/checkpoint.json``: ``checkpoint`` (last | best_val), ``chosen_step`` and
    ``last_step`` (0-based training steps); empty for predictions written before it existed."""
    path = predictions / CHECKPOINT_INFO.name
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(path, "is not valid JSON; rerun the infer stage") from None
