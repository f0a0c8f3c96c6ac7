"""What a dataset declares: the types the registry (:mod:`cvcl.datasets`), the dataset folders
and the layers a :class:`Dataset` is handed to (:mod:`cvcl.sources`, :mod:`cvcl.preprocessing`)
share.

A :class:`Dataset` is everything the pipeline knows about one value of ``dataset`` in
params.yaml: how its raw form is written (the download stage, :func:`cvcl.sources.fetch`), how
the raw form becomes processed cases (the preprocess stage, :func:`cvcl.preprocessing.preprocess`),
which published case lists it follows (:func:`cvcl.sources.protocol.shipped`), and how many
training cases it has before preprocessing (the sweep).

This module is the contract, not the registry: it imports nothing from ``cvcl`` when it runs
(the names below are for type checkers only), so the layers a dataset is handed to can name its
types without reaching the registry or any dataset folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cvcl.io.volume import Case
    from cvcl.sources.config import SourceSettings
    from cvcl.sources.transfer import Fetcher

# Writes the raw form into an empty (temporary) folder; returns the protocol record it wrote.
Writer = Callable[[Path], dict]
# (dataset, settings, progress, fetcher) -> the Writer, once the settings are checked. The dataset
# is the one declaring the writer: a shared writer (a local copy) reads its layout there.
MakeWriter = Callable[["Dataset", "SourceSettings", bool, "Fetcher | None"], Writer]
# (raw_dir, dataset name, preprocess config) -> (case, its raw image path relative to raw_dir), per
# case. The config is a cvcl.preprocessing.config.PreprocessConfig, not named here: the download
# stage reads this module and must not depend on the converters.
Converter = Callable[[Path, str, Any], Iterator[tuple["Case", str]]]
# root of the user's copy -> the files of it that make the raw form
Layout = Callable[[Path], "CopyPlan"]


@dataclass(frozen=True)
class Published:
    """A published split the package ships: ``train.list``, ``test.list`` (and ``val.list``) in
    ``cvcl/sources/data/<folder>/``; ``lists`` names it in ``protocol.json``."""

    folder: str
    lists: str
    description: str


@dataclass(frozen=True)
class Intensity:
    """How the converter turns a scan's intensities into the network's input, restated so that a
    scan outside the dataset (a prediction on a new scan) goes through the same steps.

    - ``mask``: ``"all"`` z-scores each channel over every voxel; ``"nonzero"`` over the voxels
      where any channel is non-zero (skull-stripped scans: the background stays out);
    - ``clip_percentile``: first clip each channel at this percentile of the masked voxels;
    - ``crop_nonzero``: crop to the box of non-zero voxels before normalising (the prediction is
      padded back with background).
    """

    mask: str = "all"
    clip_percentile: float | None = None
    crop_nonzero: bool = False


@dataclass(frozen=True)
class CopyPlan:
    """What a dataset's ``layout`` finds in a copy: ``files`` maps each destination (relative to
    ``data/raw``) to its source file; ``cases`` are the case ids the copy holds; ``lists_at`` is
    the folder whose ``train.list``/``test.list`` are the copy's own lists, if it has any."""

    files: dict[str, Path]
    cases: list[str]
    lists_at: Path


@dataclass(frozen=True)
class Dataset:
    """One dataset: its params name, what it is, and the code that fetches and converts it.

    - ``name``: the value of ``dataset`` in params.yaml; ``description``: one line saying what it is;
    - ``labels``: the label values of its processed cases (after the converter's mapping);
    - ``writer(dataset, settings, progress, fetcher)``: checks the
      :class:`~cvcl.sources.config.SourceSettings` (raising :class:`~cvcl.errors.ParamError`)
      and returns the :data:`Writer` of its raw form, so a bad value stops the download stage
      before anything is written; ``fetcher`` overrides the cache and retries of downloading
      sources (tests);
    - ``iter_cases``: the :data:`Converter` from raw form to processed cases;
    - ``training_cases(settings)``: training cases before preprocessing (None: unknown until then);
    - ``settings``: ``(section, dataclass)`` of the dataset's own params (a generator's), declared
      in its folder; None when ``download``'s own keys are all it reads;
    - ``published``: the shipped lists its cases follow, or None;
    - ``layout(root)``: for a dataset read from a local copy (``download.local_path``), the files
      of the copy at ``root`` that make its raw form (:func:`cvcl.sources.local.write_raw`);
    - ``order``: where it stands in :func:`cvcl.datasets.names` (the order the docs list datasets in);
    - ``intensity``: the converter's normalisation of a raw scan (:class:`Intensity`).
    """

    name: str
    description: str
    order: int
    labels: tuple[int, ...]
    writer: MakeWriter
    iter_cases: Converter
    training_cases: Callable[[SourceSettings], int | None]
    settings: tuple[str, type] | None = None
    published: Published | None = None
    layout: Layout | None = None
    intensity: Intensity = Intensity()
