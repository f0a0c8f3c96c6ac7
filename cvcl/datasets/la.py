"""``la``: the public LA release (UA-MT's 100 preprocessed h5 files), downloaded and verified.

Fetched by :mod:`cvcl.sources.la` (``download.mirror``), split by UA-MT's lists; converted by
:mod:`cvcl.preprocessing.la_h5`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvcl.datasets import Dataset, Published, Writer, converter, published_training_cases

if TYPE_CHECKING:
    from cvcl.params import Params
    from cvcl.sources.transfer import Fetcher

UA_MT = Published("la", "ua-mt", "UA-MT's LA split (80 train / 20 test)")


def writer(params: Params, progress: bool, fetcher: Fetcher | None) -> Writer:
    """Check ``download.mirror``; the writer fetches and verifies the release."""
    from cvcl.sources import la

    cfg = la.config(params)
    return lambda out: la.write_raw(cfg, out, progress=progress, fetcher=fetcher)


DATASET = Dataset(
    name="la",
    description="the public LA release (UA-MT's 100 preprocessed h5 files), over HTTPS",
    order=2,
    labels=(0, 1),  # background, atrium
    writer=writer,
    iter_cases=converter("cvcl.preprocessing.la_h5"),
    training_cases=published_training_cases("la"),
    published=UA_MT,
)
