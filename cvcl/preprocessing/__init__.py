"""Raw dataset -> processed cases (see :mod:`cvcl.io.volume` for the processed convention).

Each converter module has ``iter_cases(raw_dir, source, config)`` yielding ``(Case, raw path)``;
:func:`preprocess` writes the cases, ``manifest.csv``, and copies the split lists and
``protocol.json`` (which lists they are) from the raw folder, so the fixed split travels with
the data it names.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from cvcl.errors import DataError
from cvcl.io.atomic import atomic_path
from cvcl.io.resample import resample_case
from cvcl.io.volume import write_case
from cvcl.preprocessing import brats, la_h5, la_nrrd, nifti
from cvcl.preprocessing.config import PreprocessConfig
from cvcl.sources.layouts import LIST_NAMES, ORIGINS_FILE, PROTOCOL_FILE

# dataset name -> module with ``iter_cases(raw_dir, source, config)``
CONVERTERS = {
    "synthetic-la": nifti,
    "synthetic-brats": brats,
    "la": la_h5,
    "la-nrrd": la_nrrd,
    "brats2019": brats,
    "nifti": nifti,
}

MANIFEST_FIELDS = ["case_id", "subset", "shape", "spacing", "source", "dataset"]


def read_list(path: Path) -> list[str]:
    """Case ids from a ``train.list``/``test.list`` file (blank lines ignored)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def preprocess(dataset: str, raw_dir: str | Path, out_dir: str | Path, *,
               config: PreprocessConfig | None = None, progress: bool = True) -> int:
    """Convert ``raw_dir`` into ``out_dir`` (replaced atomically); returns the number of cases."""
    if dataset not in CONVERTERS:
        raise DataError(raw_dir, f"no converter for dataset {dataset!r}")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(raw_dir, "not found; run the download stage first")
    config = config or PreprocessConfig()
    subsets: dict[str, str] = {}
    for subset in ("train", "val", "test"):
        listing = raw_dir / f"{subset}.list"
        if listing.exists():
            subsets.update({case_id: subset for case_id in read_list(listing)})
    rows = []
    with atomic_path(out_dir, directory=True) as tmp, _naming_originals(raw_dir):
        cases = CONVERTERS[dataset].iter_cases(raw_dir, dataset, config)
        for case, source in tqdm(cases, desc=f"preprocess {dataset}", unit="case", disable=not progress):
            if config.resample is not None:
                case = resample_case(case, config.resample)
            write_case(tmp / f"{case.case_id}.h5", case)
            rows.append({
                "case_id": case.case_id,
                "subset": subsets.get(case.case_id, ""),
                "shape": "x".join(str(s) for s in case.shape),
                "spacing": "x".join(f"{s:g}" for s in case.geometry.spacing),
                "source": source,
                "dataset": dataset,
            })
        missing = sorted(set(subsets) - {r["case_id"] for r in rows})
        if missing:
            raise DataError(raw_dir, f"the case lists name {len(missing)} cases with no image, e.g. {missing[0]}")
        for name in (*LIST_NAMES, PROTOCOL_FILE):
            if (raw_dir / name).is_file():  # the fixed split travels with the data it names
                shutil.copyfile(raw_dir / name, tmp / name)
        with open(tmp / "manifest.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return len(rows)


@contextlib.contextmanager
def _naming_originals(raw_dir: Path) -> Iterator[None]:
    """Errors about a file the download stage copied name the user's original as well."""
    try:
        yield
    except DataError as exc:
        origins_file = raw_dir / ORIGINS_FILE
        origins = json.loads(origins_file.read_text()) if origins_file.is_file() else {}
        try:
            rel = Path(exc.path).resolve().relative_to(raw_dir.resolve()).as_posix()
        except ValueError:
            raise exc from None
        if rel not in origins:
            raise
        raise DataError(f"{origins[rel]} (copied to {exc.path})", exc.problem) from None


def read_manifest(processed_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``manifest.csv`` in the processed folder."""
    path = Path(processed_dir) / "manifest.csv"
    if not path.is_file():
        raise DataError(path, "not found; run the preprocess stage first")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_protocol(folder: str | Path) -> dict:
    """The ``protocol.json`` record of a raw or processed folder ({} when there is none)."""
    path = Path(folder) / PROTOCOL_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(path, "is not valid JSON") from None
    if not isinstance(record, dict):
        raise DataError(path, "expected a JSON object")
    return record
