"""``brats2019``: the user's copy of BraTS 2019 (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``).

Copied by :mod:`cvcl.sources.local` (``download.local_path``, a folder or an archive) as
:func:`.source.layout` names; split by SSL4MIS's lists; converted by the SSL4MIS protocol
(:mod:`.convert`).
"""

from cvcl.datasets.lazy import converter, layout, local_copy, published_training_cases
from cvcl.datasets.spec import Dataset, Intensity, Published

SSL4MIS = Published("brats2019", "ssl4mis", "SSL4MIS's BraTS 2019 split (250 train / 25 val / 60 test)")

DATASET = Dataset(
    name="brats2019",
    description="your copy of BraTS 2019, converted by the SSL4MIS protocol (whole tumour)",
    order=4,
    labels=(0, 1),  # background, whole tumour: the converter merges BraTS's 1, 2 and 4
    writer=local_copy,
    iter_cases=converter("cvcl.datasets.brats2019.convert"),
    training_cases=published_training_cases(SSL4MIS),
    published=SSL4MIS,
    layout=layout("cvcl.datasets.brats2019.source"),
    # SSL4MIS: brain box, brightest 0.1% of the brain clipped, z-score over the brain
    intensity=Intensity(mask="nonzero", clip_percentile=99.9, crop_nonzero=True),
)
