"""Datasets in their native (raw) form: generated, downloaded or read from a local copy.

``fetch(dataset, params, out_dir)`` writes the raw form of ``dataset`` into ``out_dir``;
:mod:`cvcl.preprocessing` converts it into processed cases. Which source writes each dataset is
its entry in :mod:`cvcl.datasets`; the sources are:

- :mod:`cvcl.sources.synthetic_la`: generated LA-like volumes (``synthetic-la``), the offline default;
- :mod:`cvcl.sources.synthetic_brats`: generated brains with tumours from the MNI152 template,
  written in BraTS's layout (``synthetic-brats``);
- :mod:`cvcl.sources.la`: the public LA h5 release, downloaded and verified (``la``);
- :mod:`cvcl.sources.local`: a local copy (folder or archive) at ``download.local_path``
  (``la-nrrd``, ``brats2019``, ``nifti``), laid out as :mod:`cvcl.sources.layouts` describes.

Every source's params are checked before anything is written, and ``out_dir`` is replaced only
when the whole raw form is complete. Each also writes ``protocol.json`` (which case lists fix the
split, :mod:`cvcl.sources.protocol`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cvcl import datasets
from cvcl.io.atomic import atomic_path
from cvcl.params import Params

if TYPE_CHECKING:  # the source modules load heavy libraries (torch, nilearn): the registry imports
    # them on use, so that stages importing only cvcl.sources.layouts stay light
    from cvcl.sources.transfer import Fetcher


def fetch(dataset: str, params: Params, out_dir: str | Path, *, progress: bool = True,
          fetcher: Fetcher | None = None) -> dict:
    """Write the raw form of ``dataset`` to ``out_dir``, replacing it only on success.

    ``fetcher`` (downloading sources only) overrides the cache and retry settings, for tests.
    Returns the protocol record written to ``out_dir/protocol.json``.
    """
    write = datasets.get(dataset).writer(params, progress, fetcher)  # validate before anything is written
    with atomic_path(out_dir, directory=True) as tmp:
        return write(tmp)
