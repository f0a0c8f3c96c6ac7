"""The registry of datasets: one module per dataset in this package, each exposing ``DATASET``.

A :class:`Dataset` is everything the pipeline knows about one value of ``dataset`` in
params.yaml: how its raw form is written (the download stage, :func:`cvcl.sources.fetch`), how
the raw form becomes processed cases (the preprocess stage, :func:`cvcl.preprocessing.preprocess`),
which published case lists it follows (:func:`cvcl.sources.protocol.shipped`), and how many
training cases it has before preprocessing (:mod:`cvcl.sweep`). The registry finds the modules
of this package itself, so adding a dataset is adding one module; ``dataset``'s choices in
:mod:`cvcl.settings` are :func:`names`.

The dataset modules only wire together code that lives elsewhere (sources in
:mod:`cvcl.sources`, converters in :mod:`cvcl.preprocessing`, layouts in
:mod:`cvcl.sources.layouts`), importing it inside functions: every stage resolves ``dataset``'s
choices from here, and must not load torch or nilearn for it.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from cvcl.registry import discover_members, member

if TYPE_CHECKING:
    from cvcl.io.volume import Case
    from cvcl.params import Params
    from cvcl.sources.local import CopyPlan
    from cvcl.sources.transfer import Fetcher

# Writes the raw form into an empty (temporary) folder; returns the protocol record it wrote.
Writer = Callable[[Path], dict]
# (params, progress, fetcher) -> the Writer, once the dataset's params are checked.
MakeWriter = Callable[["Params", bool, "Fetcher | None"], Writer]
# (raw_dir, dataset name, preprocess config) -> (case, its raw image path relative to raw_dir), per
# case. The config is a cvcl.preprocessing.config.PreprocessConfig, not imported here: the
# download stage reads this module and must not depend on the converters.
Converter = Callable[[Path, str, Any], Iterator[tuple["Case", str]]]


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
    scan outside the dataset (``cvcl.predict``) goes through the same steps.

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
class Dataset:
    """One dataset: its params name, what it is, and the code that fetches and converts it.

    - ``name``: the value of ``dataset`` in params.yaml; ``description``: one line saying what it is;
    - ``labels``: the label values of its processed cases (after the converter's mapping);
    - ``writer(params, progress, fetcher)``: checks the dataset's params (raising
      :class:`~cvcl.errors.ParamError`) and returns the :data:`Writer` of its raw form, so a bad
      value stops the download stage before anything is written; ``fetcher`` overrides the
      cache and retries of downloading sources (tests);
    - ``iter_cases``: the :data:`Converter` from raw form to processed cases;
    - ``training_cases(params)``: training cases before preprocessing (None: unknown until then);
    - ``published``: the shipped lists its cases follow, or None;
    - ``layout(root)``: for a dataset read from a local copy (``download.local_path``), the files
      of the copy at ``root`` that make its raw form (:func:`cvcl.sources.local.write_raw`);
    - ``order``: where it stands in :func:`names` (the order the docs list datasets in);
    - ``intensity``: the converter's normalisation of a raw scan (:class:`Intensity`).
    """

    name: str
    description: str
    order: int
    labels: tuple[int, ...]
    writer: MakeWriter
    iter_cases: Converter
    training_cases: Callable[[Params], int | None]
    published: Published | None = None
    layout: Callable[[Path], CopyPlan] | None = None
    intensity: Intensity = Intensity()


@functools.cache
def _registry() -> dict[str, Dataset]:
    """Every module of this package (but ``_private`` ones), by dataset name, in ``order``."""
    return discover_members(__name__, __path__, "DATASET", Dataset)


def names() -> tuple[str, ...]:
    """The valid values of ``dataset``, in the docs' order (synthetic ones first)."""
    return tuple(_registry())


def get(name: str) -> Dataset:
    """The dataset called ``name``; an unknown name is a :class:`ParamError` on ``dataset``
    suggesting the closest valid name."""
    return member(_registry(), "dataset", name)


def converter(module: str) -> Converter:
    """The ``iter_cases`` of the converter ``module`` (e.g. ``"cvcl.preprocessing.nifti"``),
    imported when first called: converters load h5py, nibabel and scipy."""

    def iter_cases(raw_dir: Path, source: str, config: Any) -> Iterator[tuple[Case, str]]:
        return importlib.import_module(module).iter_cases(raw_dir, source, config)

    return iter_cases


def generated(module: str) -> MakeWriter:
    """The writer of a generated dataset: the source ``module`` (e.g. ``"cvcl.sources.synthetic_la"``)
    checks its params section with ``config(params)`` and generates with ``write_raw(cfg, out)``."""

    def writer(params: Params, progress: bool, fetcher: Fetcher | None) -> Writer:
        source = importlib.import_module(module)  # torch, nilearn: only when generating
        cfg = source.config(params)
        return lambda out: source.write_raw(cfg, out, progress=progress)

    return writer


def local_copy(name: str) -> MakeWriter:
    """The writer of a dataset read from the user's copy at ``download.local_path``: it copies
    the files the dataset's ``layout`` names (:mod:`cvcl.sources.local`)."""

    def writer(params: Params, progress: bool, fetcher: Fetcher | None) -> Writer:
        from cvcl.sources import local

        cfg = local.config(params)
        dataset = get(name)
        return lambda out: local.write_raw(dataset, cfg, out, progress=progress)

    return writer


def published_training_cases(name: str) -> Callable[[Params], int]:
    """``training_cases`` of a dataset following published lists: the length of their ``train.list``."""

    def count(params: Params) -> int:
        from cvcl.sources import protocol

        return len(protocol.shipped(name).lists["train"])

    return count
