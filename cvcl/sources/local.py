"""Local copies of real datasets (``la-nrrd``, ``brats2019``, ``nifti``) brought into ``data/raw``.

``download.local_path`` names a folder or an archive (``.zip``, ``.tar[.gz|.bz2|.xz]``, as the
challenges distribute them). The download stage copies the files the dataset's layout names
(:mod:`cvcl.sources.layouts`), and nothing else, into ``data/raw`` so that DVC versions exactly
what was converted:

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
from typing import Callable

from tqdm import tqdm

from cvcl.errors import DataError, ParamError
from cvcl.params import Params
from cvcl.sources import protocol
from cvcl.sources.archive import SUFFIXES, is_archive, safe_extract
from cvcl.sources.layouts import (LA_NRRD_IMAGE, LA_NRRD_LABEL, NIFTI_CHANNEL, ORIGINS_FILE, find_brats_cases,
                                  find_la_nrrd_cases)
from cvcl.sources.transfer import copy_verified, sha256_file

EXTRACT_DIR = ".extract"  # inside the temporary output; removed before it is renamed into place


@dataclass(frozen=True)
class LocalConfig:
    """Where the user's copy is: a folder or an archive."""

    path: Path


def config(params: Params) -> LocalConfig:
    """``download.local_path``, checked to exist before anything is written."""
    name = "download.local_path"
    value = params.get(name)
    expected = "a folder or an archive (" + ", ".join(SUFFIXES) + ") holding the dataset"
    if value is None:
        raise ParamError(name, value, expected + f" (dataset {params.raw('dataset')!r} reads a local copy)")
    path = Path(value)
    if not (path.is_dir() or is_archive(path)):
        raise ParamError(name, value, expected + ("; it does not exist" if not path.exists() else ""))
    return LocalConfig(path)


# A plan maps each destination (relative to data/raw) to its source file.
Plan = dict[str, Path]


def _la_nrrd(root: Path) -> tuple[Plan, list[str], Path]:
    cases = find_la_nrrd_cases(root)
    plan = {}
    for case_id, (image, label) in cases.items():
        plan[f"{case_id}/{LA_NRRD_IMAGE}"] = image
        plan[f"{case_id}/{LA_NRRD_LABEL}"] = label
    parents = {image.parent.parent for image, _ in cases.values()}
    lists_at = parents.pop() if len(parents) == 1 and not (root / "train.list").exists() else root
    return plan, list(cases), lists_at


def _brats(root: Path) -> tuple[Plan, list[str], Path]:
    cases = find_brats_cases(root)
    plan = {str(path.relative_to(root).as_posix()): path for files in cases.values() for path in files.values()}
    return plan, list(cases), root


def nifti_root(root: Path) -> Path:
    """The folder holding ``imagesTr``: ``root`` itself or its single dataset sub-folder."""
    if (root / "imagesTr").is_dir():
        return root
    found = sorted(p.parent for p in root.glob("*/imagesTr") if p.is_dir() and not p.parent.name.startswith("."))
    if len(found) == 1:
        return found[0]
    raise DataError(root / "imagesTr", "not found; expected nnU-Net's raw layout (imagesTr/, labelsTr/)"
                    + (f" (several candidates: {', '.join(p.name for p in found)})" if found else ""))


def _nifti(root: Path) -> tuple[Plan, list[str], Path]:
    root = nifti_root(root)
    plan: Plan = {}
    cases = set()
    for sub in ("imagesTr", "labelsTr"):
        for path in sorted((root / sub).glob("*.nii*")) if (root / sub).is_dir() else []:
            plan[f"{sub}/{path.name}"] = path
            match = NIFTI_CHANNEL.match(path.name)
            if sub == "imagesTr" and match:
                cases.add(match["case"])
    if not cases:
        raise DataError(root / "imagesTr", "holds no <case>_0000.nii.gz files; the dataset folder is empty")
    if (root / "dataset.json").is_file():
        plan["dataset.json"] = root / "dataset.json"
    return plan, sorted(cases), root


LAYOUTS: dict[str, Callable[[Path], tuple[Plan, list[str], Path]]] = {
    "la-nrrd": _la_nrrd,
    "brats2019": _brats,
    "nifti": _nifti,
}
PUBLISHED = {"la-nrrd": "la", "brats2019": "brats2019"}  # shipped lists each source's cases follow


def write_raw(dataset: str, cfg: LocalConfig, out: Path, *, progress: bool = True) -> dict:
    """Copy the dataset at ``cfg.path`` into the (empty, temporary) folder ``out``.

    Returns the protocol record (which lists the split will use).
    """
    extracted = None
    root = cfg.path
    try:
        if is_archive(cfg.path):
            extracted = out / EXTRACT_DIR
            safe_extract(cfg.path, extracted)
            root = extracted
        plan, cases, lists_at = LAYOUTS[dataset](root)
        lines, origins = [], {}
        # links first: moving a file out of the extraction folder must not break a link to it
        order = sorted(plan.items(), key=lambda item: (not item[1].is_symlink(), item[0]))
        for rel, src in tqdm(order, desc=f"copy {dataset}", unit="file", disable=not progress):
            dst = out / rel
            if extracted is not None and not src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)  # extracted by us: move, then hash what arrived
                digest = sha256_file(dst)
            else:
                digest = copy_verified(src, dst)
            lines.append(f"{digest}  {rel}\n")
            origins[rel] = (f"{cfg.path}/{src.relative_to(extracted).as_posix()}" if extracted is not None
                            else str(src))
        own = protocol.read_lists(lists_at)
        published = protocol.shipped(PUBLISHED[dataset]) if dataset in PUBLISHED else None
        record = protocol.settle(out, dataset, cases, own, str(lists_at), published)
    except DataError as exc:
        if extracted is None:
            raise
        # name the archive, not our temporary folder: "<archive>/<member path>"
        raise DataError(str(exc.path).replace(str(extracted), str(cfg.path)),
                        exc.problem.replace(str(extracted), str(cfg.path))) from None
    finally:
        if extracted is not None and extracted.exists():
            shutil.rmtree(extracted)
    (out / "files.sha256").write_text("".join(sorted(lines, key=lambda line: line[66:])))
    (out / ORIGINS_FILE).write_text(json.dumps(origins, indent=1, sort_keys=True))
    return record
