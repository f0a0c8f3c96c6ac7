"""The ``download`` section's own keys: where a real dataset's files come from.

The generators' settings (``download.synthetic``, ``download.synthetic_brats``) are declared with
their datasets (``cvcl/datasets/synthetic_la``, ``cvcl/datasets/synthetic_brats``, each naming
its section in :attr:`~cvcl.datasets.spec.Dataset.settings`). The download stage reads both once,
as :class:`SourceSettings` (:func:`source_settings`), and hands them to the dataset's writer; the
sources check the paths when they use them (:func:`cvcl.datasets.la.source.config`,
:func:`cvcl.sources.local.config`): a folder must exist before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass as section

from cvcl.settings import SECTION

if TYPE_CHECKING:
    from cvcl.params import Params


def _expand(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser())


# A file-system path or URL, as text; ``~`` expanded (a relative path stays relative).
PathText = Annotated[str, Field(min_length=1), AfterValidator(_expand)]


@section(frozen=True, config=SECTION)
class DownloadConfig:
    """``download.mirror`` and ``download.local_path`` in params.yaml (paths or URLs as text)."""

    mirror: PathText | None = Field(
        default=None, description="la: null = the public URL; or a folder / http(s) URL base with the release's layout"
    )
    local_path: PathText | None = Field(
        default=None, description="la-nrrd | brats2019 | nifti: folder or archive (.zip, .tar.gz) of your copy"
    )


@dataclass(frozen=True)
class SourceSettings:
    """What a dataset's writer and ``training_cases`` are handed: ``download``'s own keys and the
    dataset's own section (its :attr:`~cvcl.datasets.spec.Dataset.settings` class, read from
    params.yaml; None for a dataset without one)."""

    download: DownloadConfig = field(default_factory=DownloadConfig)
    generator: Any = None  # the dataset's settings class, or None


def source_settings(params: Params, own: tuple[str, type] | None) -> SourceSettings:
    """Read ``download`` and a dataset's own section (``own``: its
    :attr:`~cvcl.datasets.spec.Dataset.settings`), checked against their declarations."""
    generator = params.config(own[1], own[0]) if own else None
    return SourceSettings(params.config(DownloadConfig, "download"), generator)
