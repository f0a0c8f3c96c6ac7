"""Datasets in their native (raw) form: generated, downloaded or read from a local copy.

``fetch(dataset, params, out_dir)`` writes the raw form of ``dataset`` into ``out_dir``;
:mod:`cvcl.preprocessing` converts it into processed cases. Sources:

- ``synthetic-la``: generated LA-like volumes (:mod:`cvcl.sources.synthetic_la`), the offline default;
- ``synthetic-brats``: generated brains with tumours from the MNI152 template
  (:mod:`cvcl.sources.synthetic_brats`), written in BraTS's layout;
- ``la``: the public LA h5 release, downloaded and verified (:mod:`cvcl.sources.la`);
- ``la-nrrd``, ``brats2019``, ``nifti``: a local copy (folder or archive) at ``download.local_path``
  (:mod:`cvcl.sources.local`).

Every source's params are checked before anything is written, and ``out_dir`` is replaced only
when the whole raw form is complete. Each also writes ``protocol.json`` (which case lists fix the
split, :mod:`cvcl.sources.protocol`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cvcl.errors import ParamError
from cvcl.io.atomic import atomic_path
from cvcl.params import Params
from cvcl.sources import protocol

if TYPE_CHECKING:  # the source modules load heavy libraries (torch, nilearn): import them on use,
    # so that stages importing only cvcl.sources.layouts stay light
    from cvcl.sources.synthetic_la import SyntheticLAConfig
    from cvcl.sources.transfer import Fetcher

DATASETS = ("synthetic-la", "synthetic-brats", "la", "la-nrrd", "brats2019", "nifti")

Writer = Callable[[Path], dict]


def synthetic_la_config(params: Params) -> SyntheticLAConfig:
    """The generator's settings from ``download.synthetic`` in params.yaml."""
    from cvcl.sources.synthetic_la import SyntheticLAConfig

    p = "download.synthetic"
    return params.config(SyntheticLAConfig, p)


def _writer(dataset: str, params: Params, progress: bool, fetcher: Fetcher | None) -> Writer:
    """Check ``dataset``'s params and return the function that writes its raw form."""
    if dataset == "synthetic-la":
        from cvcl.sources.synthetic_la import case_ids, generate_dataset
        cfg = synthetic_la_config(params)

        def write(out: Path) -> dict:
            generate_dataset(out, cfg, progress=progress)
            train, test = case_ids(cfg)
            lists = protocol.CaseLists("generator", "the generator's lists", {"train": train, "test": test})
            return protocol.write(out, dataset, lists)
        return write
    if dataset == "synthetic-brats":
        from cvcl.sources import synthetic_brats
        brats_cfg = synthetic_brats.config(params)
        return lambda out: synthetic_brats.write_raw(brats_cfg, out, progress=progress)
    if dataset == "la":
        from cvcl.sources import la
        la_cfg = la.config(params)
        return lambda out: la.write_raw(la_cfg, out, progress=progress, fetcher=fetcher)
    from cvcl.sources import local
    local_cfg = local.config(params)
    return lambda out: local.write_raw(dataset, local_cfg, out, progress=progress)


def fetch(dataset: str, params: Params, out_dir: str | Path, *, progress: bool = True,
          fetcher: Fetcher | None = None) -> dict:
    """Write the raw form of ``dataset`` to ``out_dir``, replacing it only on success.

    ``fetcher`` (downloading sources only) overrides the cache and retry settings, for tests.
    Returns the protocol record written to ``out_dir/protocol.json``.
    """
    if dataset not in DATASETS:
        raise ParamError("dataset", dataset, "one of " + ", ".join(DATASETS))
    write = _writer(dataset, params, progress, fetcher)  # validate before anything is written
    with atomic_path(out_dir, directory=True) as tmp:
        return write(tmp)
