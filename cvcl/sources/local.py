"""Local copies of real datasets (``la-nrrd``, ``brats2019``, ``nifti``) brought into ``data/raw``.

``download.local_path`` names a folder or an archive (``.zip``, ``.tar[.gz|.bz2|.xz]``, as the
challenges distribute them). The download stage copies the files the dataset's ``layout`` names
(its folder's ``source.py``, with the finders of :mod:`cvcl.sources.layouts`), and nothing else,
into ``data/raw`` so that DVC versions exactly what was converted:

- every file is copied with its sha256 computed as written and checked on the copy, and listed in
  ``data/raw/files.sha256`` (``sha256sum -c files.sha256`` re-checks it);
- an archive is first extracted safely (:mod:`cvcl.sources.archive`) into a temporary folder
  inside the stage's temporary output, and the files are moved from there, so nothing is copied
  twice and nothing is left behind on failure;
- the split lists follow :func:`cvcl.sources.protocol.settle`.

Copies rather than links: a link into the user's folder would let DVC's cache (which makes
files read-only and may move them) reach the user's original files.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from cvcl.errors import DataError, ParamError
from cvcl.sources import protocol
from cvcl.sources.archive import SUFFIXES, is_archive, safe_extract
from cvcl.sources.layouts import ORIGINS_FILE
from cvcl.sources.transfer import copy_verified, sha256_file

if TYPE_CHECKING:
    from cvcl.datasets.spec import Dataset
    from cvcl.sources.config import DownloadConfig

EXTRACT_DIR = ".extract"  # inside the temporary output; removed before it is renamed into place


@dataclass(frozen=True)
class LocalConfig:
    """Where the user's copy is: a folder or an archive."""

    path: Path


def config(download: DownloadConfig, dataset: str) -> LocalConfig:
    """``download.local_path``, checked to exist before anything is written (``dataset``: the
    name of the dataset reading it, for the message)."""
    name = "download.local_path"
    value = download.local_path
    expected = "a folder or an archive (" + ", ".join(SUFFIXES) + ") holding the dataset"
    if value is None:
        raise ParamError(name, value, expected + f" (dataset {dataset!r} reads a local copy)")
    path = Path(value)
    if not (path.is_dir() or is_archive(path)):
        raise ParamError(name, value, expected + ("; it does not exist" if not path.exists() else ""))
    return LocalConfig(path)


def write_raw(dataset: Dataset, cfg: LocalConfig, out: Path, *, progress: bool = True) -> dict:
    """Copy the files ``dataset.layout`` names in the copy at ``cfg.path`` into the (empty,
    temporary) folder ``out``.

    Returns the protocol record (which lists the split will use).
    """
    if dataset.layout is None:
        raise ValueError(f"dataset {dataset.name!r} is not read from a local copy (it has no layout)")
    extracted = None
    root = cfg.path
    try:
        if is_archive(cfg.path):
            extracted = out / EXTRACT_DIR
            safe_extract(cfg.path, extracted)
            root = extracted
        plan = dataset.layout(root)
        lines, origins = [], {}
        # links first: moving a file out of the extraction folder must not break a link to it
        order = sorted(plan.files.items(), key=lambda item: (not item[1].is_symlink(), item[0]))
        for rel, src in tqdm(order, desc=f"copy {dataset.name}", unit="file", disable=not progress):
            dst = out / rel
            if extracted is not None and not src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)  # extracted by us: move, then hash what arrived
                digest = sha256_file(dst)
            else:
                digest = copy_verified(src, dst)
            lines.append(f"{digest}  {rel}\n")
            origins[rel] = f"{cfg.path}/{src.relative_to(extracted).as_posix()}" if extracted is not None else str(src)
        own = protocol.read_lists(plan.lists_at)
        published = protocol.shipped(dataset.published) if dataset.published is not None else None
        record = protocol.settle(out, dataset.name, plan.cases, own, str(plan.lists_at), published)
    except DataError as exc:
        if extracted is None:
            raise
        # name the archive, not our temporary folder: "<archive>/<member path>"
        raise DataError(
            str(exc.path).replace(str(extracted), str(cfg.path)), exc.problem.replace(str(extracted), str(cfg.path))
        ) from None
    finally:
        if extracted is not None and extracted.exists():
            shutil.rmtree(extracted)
    (out / "files.sha256").write_text("".join(sorted(lines, key=lambda line: line[66:])))
    (out / ORIGINS_FILE).write_text(json.dumps(origins, indent=1, sort_keys=True))
    return record
