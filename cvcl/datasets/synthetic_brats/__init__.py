"""``synthetic-brats``: generated brains with a glioma, written in BraTS 2019's layout.

Written by :mod:`.source` (``download.synthetic_brats``), with the generator's own
train/val/test lists; everything after the raw form is ``brats2019``'s (the same converter, the
same labels). Its generator's settings are declared here, with the dataset, so that reading them
loads no generator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cvcl.datasets.brats2019 import DATASET as BRATS2019
from cvcl.datasets.lazy import generated
from cvcl.settings import setting


@dataclass(frozen=True)
class SyntheticBraTSConfig:
    """The generator's settings (``download.synthetic_brats`` in params.yaml)."""

    n_train: int = setting(20, "training volumes", min=2)
    n_val: int = setting(2, "validation volumes", min=0)
    n_test: int = setting(6, "test volumes", min=1)
    spacing: float = setting(3.0, "mm, isotropic", min=1.0, max=8.0)  # 2 mm: the template's own grid
    seed: int = setting(2019, "data seed", min=0)


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
