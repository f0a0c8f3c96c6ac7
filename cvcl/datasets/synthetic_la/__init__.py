"""``synthetic-la``: generated LA-like LGE-MRI volumes in nnU-Net's raw layout, the offline default.

Written by :mod:`.source` (``download.synthetic``), with the generator's own train/test lists;
converted by ``nifti``'s converter (:mod:`cvcl.datasets.nifti.convert`). Its generator's
settings are declared here, with the dataset, so that reading them loads no generator.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic.dataclasses import dataclass

from cvcl.datasets.lazy import converter, generated
from cvcl.datasets.spec import Dataset
from cvcl.settings import SECTION

Side = Annotated[int, Field(ge=16)]  # voxels
Mm = Annotated[float, Field(gt=0)]


@dataclass(frozen=True, config=SECTION)
class SyntheticLAConfig:
    """The generator's settings (``download.synthetic`` in params.yaml)."""

    n_train: int = Field(default=40, ge=2, description="training volumes")
    n_test: int = Field(default=10, ge=1, description="test volumes")
    shape: tuple[Side, Side, Side] = Field(default=(80, 72, 48), description="voxels, X Y Z")
    spacing: tuple[Mm, Mm, Mm] = Field(default=(1.25, 1.25, 1.25), description="mm, X Y Z")
    seed: int = Field(default=2026, ge=0, description="data seed")


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
