"""``synthetic-la``: generated LA-like LGE-MRI volumes in nnU-Net's raw layout, the offline default.

Written by :mod:`.source` (``download.synthetic``), with the generator's own train/test lists;
converted by ``nifti``'s converter (:mod:`cvcl.datasets.nifti.convert`).
"""

from cvcl.datasets.lazy import converter, generated
from cvcl.datasets.spec import Dataset

DATASET = Dataset(
    name="synthetic-la",
    description="generated LA-like LGE-MRI volumes (offline default)",
    order=0,
    labels=(0, 1),  # background, atrium
    writer=generated("cvcl.datasets.synthetic_la.source"),
    iter_cases=converter("cvcl.datasets.nifti.convert"),
    training_cases=lambda params: params.get("download.synthetic.n_train"),
)
