"""Convert BraTS 2019 (``brats2019``, and ``synthetic-brats``) into processed cases (SSL4MIS protocol).

Layout read: ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` below ``HGG/``/``LGG/`` or flat.

Per case:

1. read the modalities of ``preprocess.modalities`` (default FLAIR only, the SSL4MIS protocol)
   and the segmentation; all must exist, share one grid, and the labels be BraTS's 0, 1, 2, 4;
2. the brain is every voxel where any selected modality is non-zero (BraTS is skull-stripped,
   background exactly 0); crop to the bounding box of brain and tumour (recorded with the NIfTI
   affine, so predictions go back into the 240x240x155 grid);
3. per channel, clip at the 99.9th percentile of the brain voxels, then z-score with the mean and
   std of the brain voxels (background voxels keep the value zero maps to, as in SSL4MIS);
4. label = whole tumour (``seg > 0``).

SSL4MIS's script cut the last voxel of the box on each axis (``min:max`` with ``max`` inclusive);
here the box holds every brain voxel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cvcl.datasets.brats2019 import DATASET as BRATS2019
from cvcl.errors import DataError
from cvcl.io.volume import Case, read_nifti
from cvcl.preprocessing.checks import check_image, check_label, check_same_shape
from cvcl.preprocessing.config import PreprocessConfig
from cvcl.preprocessing.crop import crop, mask_box
from cvcl.preprocessing.normalize import clip_and_zscore
from cvcl.sources.layouts import BRATS_LABELS, BRATS_SEG, find_brats_cases

INTENSITY = BRATS2019.intensity  # declared once, where cvcl.predict reads it too
CLIP_PERCENTILE = INTENSITY.clip_percentile  # SSL4MIS clips the brightest 0.1% of the brain


def _require(case_id: str, files: dict[str, Path], kinds: tuple[str, ...]) -> None:
    folder = next(iter(files.values())).parent
    for kind in kinds:
        if kind not in files:
            what = "segmentation" if kind == BRATS_SEG else f"{kind} modality"
            raise DataError(
                folder / f"{case_id}_{kind}.nii.gz",
                f"not found: case {case_id} lacks its {what} (it has: {', '.join(sorted(files))})",
            )


def convert_case(case_id: str, files: dict[str, Path], modalities: tuple[str, ...], source: str) -> Case:
    """Read, check, crop and normalise one case: image ``(C, X, Y, Z)`` float32, label uint8."""
    _require(case_id, files, (*modalities, BRATS_SEG))
    channels, geometry = [], None
    for kind in modalities:
        data, geo = read_nifti(files[kind])
        if data.ndim != 3:
            raise DataError(files[kind], f"expected a 3D volume, got shape {data.shape}")
        check_image(files[kind], data)
        if geometry is None:
            geometry = geo
        else:
            check_same_shape(files[kind], channels[0].shape, data.shape)
            if not np.allclose(geo.affine, geometry.affine, atol=1e-3):
                raise DataError(files[kind], f"affine differs from the {modalities[0]}'s: not co-registered")
        channels.append(data)
    assert geometry is not None  # modalities is not empty
    seg, _ = read_nifti(files[BRATS_SEG])
    check_same_shape(files[BRATS_SEG], channels[0].shape, seg.shape)
    check_label(files[BRATS_SEG], seg, BRATS_LABELS)
    image = np.stack(channels)
    brain = (image != 0).any(axis=0)
    tumour = seg > 0
    box = mask_box(brain | tumour)
    assert box is not None  # check_image rejected all-zero volumes
    image, brain, tumour = crop(image, box), crop(brain, box), crop(tumour, box)
    image = clip_and_zscore(image, brain, CLIP_PERCENTILE)
    return Case(
        case_id,
        image,
        tumour.astype(np.uint8),
        geometry.cropped(box[0], seg.shape),
        source,
        extra={"modalities": ",".join(modalities)},
    )


def iter_cases(raw_dir: Path, source: str, config: PreprocessConfig | None = None) -> Iterator[tuple[Case, str]]:
    """Yield ``(case, first modality's path relative to raw_dir)`` for every case folder."""
    modalities = (config or PreprocessConfig()).modalities
    for case_id, files in find_brats_cases(raw_dir).items():
        case = convert_case(case_id, files, modalities, source)
        yield case, files[modalities[0]].relative_to(raw_dir).as_posix()
