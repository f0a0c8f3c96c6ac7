"""Raw dataset -> processed cases (see :mod:`cvcl.io.volume` for the processed convention)."""

from __future__ import annotations

import csv
from pathlib import Path

from tqdm import tqdm

from cvcl.errors import DataError
from cvcl.io.atomic import atomic_path
from cvcl.io.volume import write_case
from cvcl.preprocessing import nifti

# dataset name -> module with ``iter_cases(raw_dir, source)``
CONVERTERS = {
    "synthetic-la": nifti,
    "nifti": nifti,
}

MANIFEST_FIELDS = ["case_id", "subset", "shape", "spacing", "source", "dataset"]


def read_list(path: Path) -> list[str]:
    """Case ids from a ``train.list``/``test.list`` file (blank lines ignored)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def preprocess(dataset: str, raw_dir: str | Path, out_dir: str | Path, *, progress: bool = True) -> int:
    """Convert ``raw_dir`` into ``out_dir`` (replaced atomically); returns the number of cases."""
    if dataset not in CONVERTERS:
        raise DataError(raw_dir, f"no converter for dataset {dataset!r}")
    raw_dir = Path(raw_dir)
    subsets: dict[str, str] = {}
    for subset in ("train", "val", "test"):
        listing = raw_dir / f"{subset}.list"
        if listing.exists():
            subsets.update({case_id: subset for case_id in read_list(listing)})
    rows = []
    with atomic_path(out_dir, directory=True) as tmp:
        cases = CONVERTERS[dataset].iter_cases(raw_dir, dataset)
        for case, source in tqdm(cases, desc=f"preprocess {dataset}", unit="case", disable=not progress):
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
        for subset in ("train", "val", "test"):
            listing = raw_dir / f"{subset}.list"
            if listing.exists():  # the fixed split travels with the data it names
                (tmp / listing.name).write_text(listing.read_text())
        with open(tmp / "manifest.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return len(rows)


def read_manifest(processed_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``manifest.csv`` in the processed folder."""
    path = Path(processed_dir) / "manifest.csv"
    if not path.is_file():
        raise DataError(path, "not found; run the preprocess stage first")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
