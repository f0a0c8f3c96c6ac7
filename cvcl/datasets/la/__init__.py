"""``la``: the public LA release (UA-MT's 100 preprocessed h5 files), downloaded and verified.

Fetched by :mod:`.source` (``download.mirror``), split by UA-MT's lists; converted by
:mod:`.convert`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvcl.datasets.lazy import converter, published_training_cases
from cvcl.datasets.spec import Dataset, Published, Writer

if TYPE_CHECKING:
    from cvcl.sources.config import SourceSettings
    from cvcl.sources.transfer import Fetcher

UA_MT = Published("la", "ua-mt", "UA-MT's LA split (80 train / 20 test)")


def writer(dataset: Dataset, settings: SourceSettings, progress: bool, fetcher: Fetcher | None) -> Writer:
    """Check ``download.mirror``; the writer fetches and verifies the release."""
    from cvcl.datasets.la import source  # the transfer machinery: only when downloading

    cfg = source.config(settings.download)
    return lambda out: source.write_raw(cfg, UA_MT, out, progress=progress, fetcher=fetcher)


DATASET = Dataset(
    name="la",
    description="the public LA release (UA-MT's 100 preprocessed h5 files), over HTTPS",
    order=2,
    labels=(0, 1),  # background, atrium
    writer=writer,
    iter_cases=converter("cvcl.datasets.la.convert"),
    training_cases=published_training_cases(UA_MT),
    published=UA_MT,
)
