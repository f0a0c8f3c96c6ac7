"""``synthetic-brats``: generated brains with a glioma, written in BraTS 2019's layout.

Written by :mod:`.source` (``download.synthetic_brats``), with the generator's own
train/val/test lists; everything after the raw form is ``brats2019``'s (the same converter, the
same labels).
"""

from dataclasses import replace

from cvcl.datasets.brats2019 import DATASET as BRATS2019
from cvcl.datasets.lazy import generated

DATASET = replace(
    BRATS2019,
    name="synthetic-brats",
    description="generated multi-modal brain MRI with a glioma, in BraTS 2019's layout (offline)",
    order=1,
    writer=generated("cvcl.datasets.synthetic_brats.source"),
    # its own section, not download.synthetic (synthetic-la's)
    training_cases=lambda params: params.get("download.synthetic_brats.n_train"),
    published=None,  # the generator writes its own lists
    layout=None,     # generated, not copied
)
