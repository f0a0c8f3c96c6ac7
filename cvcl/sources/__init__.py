"""Datasets in their native (raw) form: generated, downloaded or read from a local copy.

``fetch(dataset, params, out_dir)`` writes the raw form of ``dataset`` into ``out_dir``;
:mod:`cvcl.preprocessing` converts it into processed cases.
"""

from __future__ import annotations

from pathlib import Path

from cvcl.errors import ParamError
from cvcl.io.atomic import atomic_path
from cvcl.params import Params
from cvcl.sources.synthetic_la import SyntheticLAConfig, generate_dataset

DATASETS = ("synthetic-la",)


def synthetic_la_config(params: Params) -> SyntheticLAConfig:
    """The generator's settings from ``download.synthetic`` in params.yaml."""
    p = "download.synthetic"
    return SyntheticLAConfig(
        n_train=params.int(f"{p}.n_train", min=2),
        n_test=params.int(f"{p}.n_test", min=1),
        shape=tuple(params.int_list(f"{p}.shape", length=3, min=16)),
        spacing=tuple(params.float_list(f"{p}.spacing", length=3, min=0, min_exclusive=True)),
        seed=params.int(f"{p}.seed", min=0),
    )


def fetch(dataset: str, params: Params, out_dir: str | Path, *, progress: bool = True) -> None:
    """Write the raw form of ``dataset`` to ``out_dir``, replacing it only on success."""
    if dataset not in DATASETS:
        raise ParamError("dataset", dataset, "one of " + ", ".join(DATASETS))
    cfg = synthetic_la_config(params)  # validate before anything is written
    with atomic_path(out_dir, directory=True) as tmp:
        generate_dataset(tmp, cfg, progress=progress)
