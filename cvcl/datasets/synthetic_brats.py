"""``synthetic-brats``: generated brains with a glioma, written in BraTS 2019's layout.

Written by :mod:`cvcl.sources.synthetic_brats` (``download.synthetic_brats``), with the
generator's own train/val/test lists; converted as ``brats2019`` (:mod:`cvcl.preprocessing.brats`).
"""

from cvcl.datasets import Dataset, converter, generated

DATASET = Dataset(
    name="synthetic-brats",
    description="generated multi-modal brain MRI with a glioma, in BraTS 2019's layout (offline)",
    order=1,
    labels=(0, 1),  # background, whole tumour: the converter merges BraTS's 1, 2 and 4
    writer=generated("cvcl.sources.synthetic_brats"),
    iter_cases=converter("cvcl.preprocessing.brats"),
    # its own section, not download.synthetic (synthetic-la's)
    training_cases=lambda params: params.get("download.synthetic_brats.n_train"),
)
