"""Datasets in their native (raw) form: the acquisition machinery the dataset folders share.

``fetch(dataset, settings, out_dir)`` writes the raw form of a :class:`~cvcl.datasets.spec.Dataset`
(the download stage asks :mod:`cvcl.datasets` for it) into ``out_dir``; its converter then turns
that into processed cases (:func:`cvcl.preprocessing.preprocess`). How each dataset's raw form is
made is its own folder's ``source.py`` (``cvcl/datasets/<name>/``); what several of them use is
here:

- :mod:`cvcl.sources.transfer`: resumable, cached, verified downloads (``la``);
- :mod:`cvcl.sources.local`: a local copy (folder or archive) at ``download.local_path``
  (``la-nrrd``, ``brats2019``, ``nifti``), with :mod:`cvcl.sources.archive` to extract it safely
  and :mod:`cvcl.sources.layouts` describing how each real dataset lays out its files;
- :mod:`cvcl.sources.protocol`: the case lists that fix a split, and the published ones the
  package ships (``data/``);
- :mod:`cvcl.sources.synthetic`: what the two generators share;
- :mod:`cvcl.sources.config`: the declaration of ``download.mirror`` and ``download.local_path``.

Every source's params are checked before anything is written, and ``out_dir`` is replaced only
when the whole raw form is complete. Each also writes ``protocol.json`` (which case lists fix the
split, :mod:`cvcl.sources.protocol`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cvcl.io.atomic import atomic_path

if TYPE_CHECKING:  # the source modules load heavy libraries (torch, nilearn): the dataset's
    # writer imports them on use, so that stages importing only cvcl.sources.layouts stay light
    from cvcl.datasets.spec import Dataset
    from cvcl.sources.config import SourceSettings
    from cvcl.sources.transfer import Fetcher


def fetch(
    dataset: Dataset,
    settings: SourceSettings,
    out_dir: str | Path,
    *,
    progress: bool = True,
    fetcher: Fetcher | None = None,
) -> dict:
    """Write the raw form of ``dataset`` to ``out_dir``, replacing it only on success.

    ``settings``: ``download``'s keys and the dataset's own section, as
    :func:`cvcl.sources.config.source_settings` reads them from params.yaml.

    ``fetcher`` (downloading sources only) overrides the cache and retry settings, for tests.
    Returns the protocol record written to ``out_dir/protocol.json``.
    """
    write = dataset.writer(dataset, settings, progress, fetcher)  # validate before anything is written
    with atomic_path(out_dir, directory=True) as tmp:
        return write(tmp)
