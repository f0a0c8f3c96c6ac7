"""The pieces a dataset declaration is built from, each importing its code on first use.

Every stage resolves ``dataset``'s choices through the registry, which imports every
declaration: a declaration must therefore not load torch, nilearn, h5py or nibabel, nor the
shared machinery of :mod:`cvcl.sources` and :mod:`cvcl.preprocessing`. It names its source and
converter modules instead (``converter("cvcl.datasets.nifti.convert")``), and the functions here
import them when the download or preprocess stage first calls them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvcl.datasets.spec import Converter, CopyPlan, Dataset, Layout, MakeWriter, Published, Writer

if TYPE_CHECKING:
    from cvcl.io.volume import Case
    from cvcl.sources.config import SourceSettings
    from cvcl.sources.transfer import Fetcher


def converter(module: str) -> Converter:
    """The ``iter_cases`` of the converter ``module`` (e.g. ``"cvcl.datasets.nifti.convert"``),
    imported when first called: converters load h5py, nibabel and scipy."""

    def iter_cases(raw_dir: Path, source: str, config: Any) -> Iterator[tuple[Case, str]]:
        return importlib.import_module(module).iter_cases(raw_dir, source, config)

    return iter_cases


def generated(module: str) -> MakeWriter:
    """The writer of a generated dataset: the source ``module`` (e.g.
    ``"cvcl.datasets.synthetic_la.source"``) generates with ``write_raw(cfg, out)``, ``cfg`` the
    dataset's own section (``settings.generator``)."""

    def writer(dataset: Dataset, settings: SourceSettings, progress: bool, fetcher: Fetcher | None) -> Writer:
        source = importlib.import_module(module)  # torch, nilearn: only when generating
        return lambda out: source.write_raw(settings.generator, out, progress=progress)

    return writer


def layout(module: str) -> Layout:
    """The ``layout`` of the source ``module`` (e.g. ``"cvcl.datasets.nifti.source"``): the files of
    the user's copy that make the raw form, found when the download stage copies them."""

    def plan(root: Path) -> CopyPlan:
        return importlib.import_module(module).layout(root)

    return plan


def local_copy(dataset: Dataset, settings: SourceSettings, progress: bool, fetcher: Fetcher | None) -> Writer:
    """The writer of a dataset read from the user's copy at ``download.local_path``: it copies
    the files ``dataset.layout`` names (:mod:`cvcl.sources.local`)."""
    from cvcl.sources import local

    cfg = local.config(settings.download, dataset.name)
    return lambda out: local.write_raw(dataset, cfg, out, progress=progress)


def published_training_cases(published: Published) -> Callable[[SourceSettings], int]:
    """``training_cases`` of a dataset following ``published``: the length of its ``train.list``."""

    def count(settings: SourceSettings) -> int:
        from cvcl.sources import protocol

        return len(protocol.shipped(published).lists["train"])

    return count
