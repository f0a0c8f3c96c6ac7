"""``la-nrrd``: the user's copy of the 2018 LA challenge's original NRRD files.

Copied by :mod:`cvcl.sources.local` (``download.local_path``, a folder or the challenge's zip)
as :func:`.source.layout` names; split by UA-MT's lists (as ``la``); converted as UA-MT made its
h5 release (:mod:`.convert`).
"""

from cvcl.datasets.la import UA_MT
from cvcl.datasets.lazy import converter, layout, local_copy, published_training_cases
from cvcl.datasets.spec import Dataset

DATASET = Dataset(
    name="la-nrrd",
    description="your copy of the 2018 LA challenge's original NRRD data, converted as UA-MT did",
    order=3,
    labels=(0, 1),  # background, atrium (the converter maps the NRRD's 255 to 1)
    writer=local_copy,
    iter_cases=converter("cvcl.datasets.la_nrrd.convert"),
    training_cases=published_training_cases(UA_MT),
    published=UA_MT,
    layout=layout("cvcl.datasets.la_nrrd.source"),
)
