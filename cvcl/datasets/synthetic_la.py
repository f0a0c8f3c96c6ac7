"""``synthetic-la``: generated LA-like LGE-MRI volumes in nnU-Net's raw layout, the offline default.

Written by :mod:`cvcl.sources.synthetic_la` (``download.synthetic``), with the generator's own
train/test lists; converted by :mod:`cvcl.preprocessing.nifti`.
"""

from cvcl.datasets import Dataset, converter, generated

DATASET = Dataset(
    name="synthetic-la",
    description="generated LA-like LGE-MRI volumes (offline default)",
    order=0,
    labels=(0, 1),  # background, atrium
    writer=generated("cvcl.sources.synthetic_la"),
    iter_cases=converter("cvcl.preprocessing.nifti"),
    training_cases=lambda params: params.get("download.synthetic.n_train"),
)
