"""How each real dataset lays out its files on disk, and finding its cases there.

Shared by the download stage (which copies exactly these files into ``data/raw``) and the
preprocess stage (which converts them), so both agree on what a case is.

- LA release (UA-MT's preprocessed h5): ``2018LA_Seg_Training Set/<case>/mri_norm2.h5`` plus
  ``train.list`` and ``test.list`` beside the folder.
- LA challenge original: ``<case>/lgemri.nrrd`` (image) and ``<case>/laendo.nrrd`` (label, 255 =
  atrium), the case folders anywhere below the root (the challenge zip has ``Training Set/``).
- BraTS 2019: ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` with the case folders in ``HGG/``
  and ``LGG/`` or directly below the root.
- nnU-Net raw: ``imagesTr/<case>_0000.nii.gz`` (more channels ``_0001``, ...), ``labelsTr/<case>.nii.gz``,
  at the root or in its single dataset sub-folder (``Dataset001_Name/``).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cvcl.errors import DataError

LA_RELEASE_DIR = "2018LA_Seg_Training Set"
LA_H5 = "mri_norm2.h5"
LA_SPACING_MM = 0.625  # the challenge's isotropic voxel size; the h5 release carries no geometry
LA_NRRD_IMAGE, LA_NRRD_LABEL = "lgemri.nrrd", "laendo.nrrd"

Modality = Literal["flair", "t1", "t1ce", "t2"]  # preprocess.modalities
BRATS_MODALITIES: tuple[str, ...] = typing.get_args(Modality)
BRATS_SEG = "seg"
BRATS_LABELS = (0, 1, 2, 4)  # background, necrotic/non-enhancing core, oedema, enhancing tumour
_BRATS_FILE = re.compile(r"^(?P<case>.+)_(?P<kind>flair|t1|t1ce|t2|seg)\.nii(\.gz)?$")

# nnU-Net raw convention: imagesTr/<case>_<channel, 4 digits>.nii.gz, labelsTr/<case>.nii.gz
NIFTI_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")

# raw file (relative to data/raw) -> where the user's copy of it came from, so that errors about
# a raw file name the user's original (a path, "<archive>/<member>", or a URL)
ORIGINS_FILE = "origins.json"


def _skip(path: Path) -> bool:
    # macOS archives carry __MACOSX/ and ._* resource forks that look like cases
    return any(part.startswith(".") or part == "__MACOSX" for part in path.parts)


def find_la_h5_cases(root: Path) -> dict[str, Path]:
    """``{case_id: path of mri_norm2.h5}`` for every case folder of the LA release under ``root``."""
    folder = root / LA_RELEASE_DIR
    if not folder.is_dir():
        raise DataError(folder, "not found; expected the LA release layout (<case>/mri_norm2.h5)")
    cases = {p.parent.name: p for p in sorted(folder.glob(f"*/{LA_H5}"))}
    if not cases:
        raise DataError(folder, f"holds no <case>/{LA_H5} files; the dataset folder is empty")
    return cases


def find_la_nrrd_cases(root: Path) -> dict[str, tuple[Path, Path]]:
    """``{case_id: (lgemri.nrrd, laendo.nrrd)}`` for every case folder below ``root``.

    A case folder is any folder holding ``lgemri.nrrd``; its label must be beside it.
    """
    cases: dict[str, tuple[Path, Path]] = {}
    for image in sorted(root.rglob(LA_NRRD_IMAGE)):
        rel = image.relative_to(root)
        if _skip(rel):
            continue
        case_id = image.parent.name
        if case_id in cases:
            raise DataError(image, f"case {case_id} appears twice (also {cases[case_id][0]})")
        label = image.with_name(LA_NRRD_LABEL)
        if not label.is_file():
            raise DataError(label, "not found (every lgemri.nrrd needs its laendo.nrrd label)")
        cases[case_id] = (image, label)
    if not cases:
        raise DataError(root, f"holds no <case>/{LA_NRRD_IMAGE} files; the dataset folder is empty")
    return dict(sorted(cases.items()))


def find_brats_cases(root: Path) -> dict[str, dict[str, Path]]:
    """``{case_id: {"flair": path, "t1": ..., "seg": ...}}`` for the BraTS case folders below ``root``.

    Only files named ``<folder name>_<kind>.nii[.gz]`` count, so a stray file cannot join a case.
    Which kinds a case must have is the converter's business (it depends on ``modalities``).
    """
    cases: dict[str, dict[str, Path]] = {}
    folders: dict[str, Path] = {}
    for path in sorted(root.rglob("*.nii*")):
        match = _BRATS_FILE.match(path.name)
        if not match or _skip(path.relative_to(root)) or match["case"] != path.parent.name:
            continue
        case_id = match["case"]
        if folders.setdefault(case_id, path.parent) != path.parent:
            raise DataError(path.parent, f"case {case_id} appears twice (also {folders[case_id]})")
        kinds = cases.setdefault(case_id, {})
        if match["kind"] in kinds:  # both .nii and .nii.gz
            raise DataError(path, f"duplicates {kinds[match['kind']].name}")
        kinds[match["kind"]] = path
    if not cases:
        raise DataError(
            root, "holds no BraTS case folders (<case>/<case>_flair.nii.gz, ...); the dataset folder is empty"
        )
    return dict(sorted(cases.items()))  # by case id, whichever grade folder holds the case


def nifti_root(root: Path) -> Path:
    """The folder holding ``imagesTr``: ``root`` itself or its single dataset sub-folder."""
    if (root / "imagesTr").is_dir():
        return root
    found = sorted(p.parent for p in root.glob("*/imagesTr") if p.is_dir() and not p.parent.name.startswith("."))
    if len(found) == 1:
        return found[0]
    raise DataError(
        root / "imagesTr",
        "not found; expected nnU-Net's raw layout (imagesTr/, labelsTr/)"
        + (f" (several candidates: {', '.join(p.name for p in found)})" if found else ""),
    )


@dataclass(frozen=True)
class NiftiCase:
    """One case of nnU-Net's raw layout: its channel files in channel order, and its label file
    (None when ``labelsTr`` lacks it: the converter reports that, naming the file)."""

    images: tuple[Path, ...]
    label: Path | None


def find_nifti_cases(root: Path) -> dict[str, NiftiCase]:
    """Every case of the nnU-Net raw layout at ``root``, in file-name order.

    Only ``imagesTr/<case>_<4-digit channel>.nii[.gz]`` files count; every case must have the
    channels 0000, 0001, ... without gaps, and all cases the same number of channels.
    """
    images = root / "imagesTr"
    if not images.is_dir():
        raise DataError(images, "not found; expected nnU-Net's raw layout (imagesTr/, labelsTr/)")
    channels: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(images.iterdir()):
        match = NIFTI_CHANNEL.match(path.name)
        if match and not _skip(Path(path.name)):
            channels.setdefault(match["case"], []).append((int(match["channel"]), path))
    if not channels:
        raise DataError(images, "holds no <case>_0000.nii.gz files; the dataset folder is empty")
    cases = {}
    for case_id, numbered in channels.items():
        numbered.sort()
        numbers = [n for n, _ in numbered]
        if numbers != list(range(len(numbers))):
            raise DataError(
                images / f"{case_id}_0000.nii.gz", f"channels {numbers} are not numbered 0000, 0001, ... without gaps"
            )
        labels = [root / "labelsTr" / f"{case_id}{suffix}" for suffix in (".nii.gz", ".nii")]
        cases[case_id] = NiftiCase(tuple(p for _, p in numbered), next((p for p in labels if p.is_file()), None))
    counts = {len(case.images) for case in cases.values()}
    if len(counts) > 1:
        raise DataError(images, f"cases have different numbers of channels: {sorted(counts)}")
    return cases
