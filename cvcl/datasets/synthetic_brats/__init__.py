"""``synthetic-brats``: generated brains with a glioma, written in BraTS 2019's layout.

Written by :mod:`.source` (``download.synthetic_brats``), with the generator's own
train/val/test lists; everything after the raw form is ``brats2019``'s (the same converter, the
same labels). Its generator's settings are declared here, with the dataset, so that reading them
loads no generator.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field
from pydantic.dataclasses import dataclass

from cvcl.datasets.brats2019 import DATASET as BRATS2019
from cvcl.datasets.lazy import generated
from cvcl.settings import SECTION


@dataclass(frozen=True, config=SECTION)
class SyntheticBraTSConfig:
    """The generator's settings (``download.synthetic_brats`` in params.yaml)."""

    n_train: int = Field(default=20, ge=2, description="training volumes")
    n_val: int = Field(default=2, ge=0, description="validation volumes")
    n_test: int = Field(default=6, ge=1, description="test volumes")
    spacing: float = Field(default=3.0, ge=1.0, le=8.0, description="mm, isotropic")  # 2 mm: the template's own grid
    seed: int = Field(default=2019, ge=0, description="data seed")


DATASET = replace(
    BRATS2019,
    name="synthetic-brats",
    description="generated multi-modal brain MRI with a glioma, in BraTS 2019's layout (offline)",
    order=1,
    writer=generated("cvcl.datasets.synthetic_brats.source"),
    # its own section, not download.synthetic (synthetic-la's)
    training_cases=lambda settings: settings.generator.n_train,
    settings=("download.synthetic_brats", SyntheticBraTSConfig),
    published=None,  # the generator writes its own lists
    layout=None,  # generated, not copied
)
