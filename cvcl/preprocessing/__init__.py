"""Raw dataset -> processed cases (see :mod:`cvcl.io.volume` for the processed convention).

Each dataset's converter (``cvcl/datasets/<name>/convert.py``) has ``iter_cases(raw_dir, source,
config)`` yielding ``(Case, raw path)``, built from the steps this package shares (checks, crops,
normalisation). :func:`preprocess` runs the one the dataset declares and writes the cases,
``manifest.csv``, and copies the split lists and ``protocol.json`` (which lists they are) from
the raw folder, so the fixed split travels with the data it names.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from cvcl.entrypoint import raise_if_terminating
from cvcl.errors import DataError
from cvcl.io.atomic import atomic_path, write_json
from cvcl.preprocessing.config import PreprocessConfig
from cvcl.sources.layouts import ORIGINS_FILE
from cvcl.workspace import LIST_NAMES, PROTOCOL_FILE, RECIPE, case_file, read_list, write_manifest

if TYPE_CHECKING:
    from cvcl.datasets.spec import Dataset


def preprocess(
    dataset: Dataset,
    raw_dir: str | Path,
    out_dir: str | Path,
    *,
    config: PreprocessConfig | None = None,
    progress: bool = True,
) -> int:
    """Convert ``raw_dir`` into ``out_dir`` (replaced atomically) with ``dataset``'s converter;
    returns the number of cases."""
    # imported here, not above: every stage imports this package to read the preprocess section
    # (cvcl.settings), and these load torch, h5py and nibabel
    from cvcl.io.resample import resample_case
    from cvcl.io.volume import write_case
    from cvcl.preprocessing.recipe import channel_names, make_recipe

    convert = dataset.iter_cases
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(raw_dir, "not found; run the download stage first")
    config = config or PreprocessConfig()
    subsets: dict[str, str] = {}
    for subset in ("train", "val", "test"):
        listing = raw_dir / f"{subset}.list"
        if listing.exists():
            subsets.update({case_id: subset for case_id in read_list(listing)})
    rows, spacings = [], []
    channels: tuple[str, ...] = ("image",)
    with atomic_path(out_dir, directory=True) as tmp, _naming_originals(raw_dir):
        cases = convert(raw_dir, dataset.name, config)
        for case, source in tqdm(cases, desc=f"preprocess {dataset.name}", unit="case", disable=not progress):
            raise_if_terminating()
            if config.resample is not None:
                case = resample_case(case, config.resample)
            write_case(case_file(case.case_id, tmp), case)
            spacings.append(case.geometry.spacing)
            channels = channel_names(case.image.shape[0], str(case.extra.get("modalities", "")))
            rows.append(
                {
                    "case_id": case.case_id,
                    "subset": subsets.get(case.case_id, ""),
                    "shape": "x".join(str(s) for s in case.shape),
                    "spacing": "x".join(f"{s:g}" for s in case.geometry.spacing),
                    "source": source,
                    "dataset": dataset.name,
                }
            )
        missing = sorted(set(subsets) - {r["case_id"] for r in rows})
        if missing:
            raise DataError(raw_dir, f"the case lists name {len(missing)} cases with no image, e.g. {missing[0]}")
        for name in (*LIST_NAMES, PROTOCOL_FILE):
            if (raw_dir / name).is_file():  # the fixed split travels with the data it names
                shutil.copyfile(raw_dir / name, tmp / name)
        write_manifest(tmp, rows)
        recipe = make_recipe(dataset.name, dataset.intensity, channels, config.resample, spacings)
        write_json(tmp / RECIPE.name, recipe.as_dict())
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
