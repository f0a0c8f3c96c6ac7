"""``brats2019``: the user's copy of BraTS 2019 (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``).

Copied by :mod:`cvcl.sources.local` (``download.local_path``, a folder or an archive) as
:func:`layout` names; split by SSL4MIS's lists; converted by the SSL4MIS protocol
(:mod:`cvcl.preprocessing.brats`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cvcl.datasets import Dataset, Intensity, Published, converter, local_copy, published_training_cases

if TYPE_CHECKING:
    from cvcl.sources.local import CopyPlan

SSL4MIS = Published("brats2019", "ssl4mis", "SSL4MIS's BraTS 2019 split (250 train / 25 val / 60 test)")


def layout(root: Path) -> CopyPlan:
    """Every file of every BraTS case folder below ``root``, kept at its path (``HGG/``, ``LGG/``)."""
    from cvcl.sources.layouts import find_brats_cases
    from cvcl.sources.local import CopyPlan

    cases = find_brats_cases(root)
    files = {path.relative_to(root).as_posix(): path for kinds in cases.values() for path in kinds.values()}
    return CopyPlan(files, list(cases), root)


DATASET = Dataset(
    name="brats2019",
    description="your copy of BraTS 2019, converted by the SSL4MIS protocol (whole tumour)",
    order=4,
    labels=(0, 1),  # background, whole tumour: the converter merges BraTS's 1, 2 and 4
    writer=local_copy("brats2019"),
    iter_cases=converter("cvcl.preprocessing.brats"),
    training_cases=published_training_cases("brats2019"),
    published=SSL4MIS,
    layout=layout,
    # SSL4MIS: brain box, brightest 0.1% of the brain clipped, z-score over the brain
    intensity=Intensity(mask="nonzero", clip_percentile=99.9, crop_nonzero=True),
)
