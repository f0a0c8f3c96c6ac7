"""The ``download`` section's own keys: where a real dataset's files come from.

The generators' settings (``download.synthetic``, ``download.synthetic_brats``) are declared with
their datasets (``cvcl/datasets/synthetic_la``, ``cvcl/datasets/synthetic_brats``). The sources
check these values when they read them (:func:`cvcl.datasets.la.source.config`,
:func:`cvcl.sources.local.config`): a folder must exist before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvcl.settings import PathText, setting


@dataclass(frozen=True)
class DownloadConfig:
    """``download.mirror`` and ``download.local_path`` in params.yaml (paths or URLs as text)."""

    mirror: PathText | None = setting(
        None, "la: null = the public URL; or a folder / http(s) URL base with the release's layout"
    )
    local_path: PathText | None = setting(
        None, "la-nrrd | brats2019 | nifti: folder or archive (.zip, .tar.gz) of your copy"
    )
