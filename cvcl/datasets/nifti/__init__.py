"""``nifti``: the user's own binary task in nnU-Net's raw layout (``imagesTr/``, ``labelsTr/``).

Copied by :mod:`cvcl.sources.local` (``download.local_path``, a folder or an archive) as
:func:`.source.layout` names; no published split (the copy's own lists, or ``split.strategy:
random``); converted by :mod:`.convert`.
"""

from cvcl.datasets.lazy import converter, layout, local_copy
from cvcl.datasets.spec import Dataset

DATASET = Dataset(
    name="nifti",
    description="your own binary task in nnU-Net's raw convention",
    order=5,
    labels=(0, 1),  # the converter accepts binary labels only
    writer=local_copy,
    iter_cases=converter("cvcl.datasets.nifti.convert"),
    training_cases=lambda settings: None,  # the copy's own lists or a random split: known once preprocessed
    layout=layout("cvcl.datasets.nifti.source"),
)
