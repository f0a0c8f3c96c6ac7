"""``synthetic-la``: generated LA-like LGE-MRI volumes in nnU-Net's raw layout, the offline default.

Written by :mod:`.source` (``download.synthetic``), with the generator's own train/test lists;
converted by ``nifti``'s converter (:mod:`cvcl.datasets.nifti.convert`). Its generator's
settings are declared here, with the dataset, so that reading them loads no generator.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvcl.datasets.lazy import converter, generated
from cvcl.datasets.spec import Dataset
from cvcl.settings import setting


@dataclass(frozen=True)
class SyntheticLAConfig:
    """The generator's settings (``download.synthetic`` in params.yaml)."""

    n_train: int = setting(40, "training volumes", min=2)
    n_test: int = setting(10, "test volumes", min=1)
    shape: tuple[int, int, int] = setting((80, 72, 48), "voxels, X Y Z", min=16)
    spacing: tuple[float, float, float] = setting((1.25, 1.25, 1.25), "mm, X Y Z", min=0, min_exclusive=True)
    seed: int = setting(2026, "data seed", min=0)


DATASET = Dataset(
    name="synthetic-la",
    description="generated LA-like LGE-MRI volumes (offline default)",
    order=0,
    labels=(0, 1),  # background, atrium
    writer=generated("cvcl.datasets.synthetic_la.source"),
    iter_cases=converter("cvcl.datasets.nifti.convert"),
    training_cases=lambda settings: settings.generator.n_train,
    settings=("download.synthetic", SyntheticLAConfig),
)
