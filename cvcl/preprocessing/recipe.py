"""The preprocessing a model was trained with, recorded so that a new scan goes through it too.

The preprocess stage writes ``data/processed/preprocessing.json`` (:data:`cvcl.workspace.RECIPE`);
the train stage copies it into the checkpoint's ``meta["preprocessing"]`` and the infer stage
into the MLflow model's metadata. :func:`prepare` applies it to a raw scan for ``cvcl.predict``:

1. crop to the box of non-zero voxels where the dataset does (BraTS);
2. normalise the intensities as the dataset's converter does (:class:`cvcl.datasets.spec.Intensity`);
3. resample to ``preprocess.resample`` where training did.

What the converters do that needs the reference label (the LA crop around the atrium) cannot be
repeated on a new scan: the sliding window then covers the whole scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import median

import numpy as np

from cvcl.datasets.spec import Intensity
from cvcl.errors import DataError
from cvcl.io.resample import resample_case
from cvcl.io.volume import Case, Geometry, float3
from cvcl.preprocessing.crop import crop, mask_box
from cvcl.preprocessing.normalize import clip_and_zscore

FORMAT_VERSION = 1
MASKS = ("all", "nonzero")


@dataclass(frozen=True)
class Recipe:
    """How training cases were made from raw scans.

    ``channels`` names the image channels in order (BraTS modalities, or ``image``);
    ``resample`` is the target spacing in mm (None: scans kept their own); ``spacing`` is the
    median voxel spacing (mm, per axis) of the processed cases: the resolution the network saw.
    """

    dataset: str
    channels: tuple[str, ...]
    intensity: Intensity
    resample: tuple[float, float, float] | None
    spacing: tuple[float, float, float]

    def as_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "channels": list(self.channels),
            "intensity": asdict(self.intensity),
            "resample": list(self.resample) if self.resample is not None else None,
            "spacing": list(self.spacing),
        }

    @classmethod
    def from_dict(cls, record: dict, where: str) -> Recipe:
        """The recipe of a record written by :meth:`as_dict`; DataError naming ``where`` if it is not one."""
        try:
            intensity = Intensity(**record["intensity"])
            if intensity.mask not in MASKS:
                raise ValueError(f"intensity mask {intensity.mask!r}")
            resample = record["resample"]
            return cls(
                str(record["dataset"]),
                tuple(str(c) for c in record["channels"]),
                intensity,
                float3(resample) if resample is not None else None,
                float3(record["spacing"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(where, f"holds no usable preprocessing record ({type(exc).__name__}: {exc})") from None


def channel_names(n: int, modalities: str = "") -> tuple[str, ...]:
    """Names of ``n`` image channels: the modalities a converter recorded (``"flair,t1"``), else
    ``image`` for one channel and ``channel0``, ``channel1``... for several."""
    if modalities:
        return tuple(modalities.split(","))
    return ("image",) if n == 1 else tuple(f"channel{c}" for c in range(n))


def make_recipe(
    dataset: str,
    intensity: Intensity,
    channels: Sequence[str],
    resample: Sequence[float] | None,
    spacings: Sequence[Sequence[float]],
) -> Recipe:
    """The recipe of a preprocess run; ``spacings`` are the processed cases' (mm per axis)."""
    spacing = float3(median(s[a] for s in spacings) for a in range(3)) if spacings else (1.0, 1.0, 1.0)
    return Recipe(dataset, tuple(channels), intensity, float3(resample) if resample is not None else None, spacing)


def prepare(image: np.ndarray, geometry: Geometry, recipe: Recipe, case_id: str = "scan") -> Case:
    """A raw scan ``(C, X, Y, Z)`` as the network's input: a :class:`Case` whose geometry records
    the crop and the resampling, so :func:`cvcl.io.volume.to_original_grid` (after resizing the
    prediction to ``geometry.source_shape``) puts the prediction back into the scan's grid."""
    intensity = recipe.intensity
    image = np.asarray(image, dtype=np.float32)
    shape = tuple(image.shape[-3:])
    # a full pass over the volume, made only where a step needs the non-zero voxels
    nonzero = (image != 0).any(axis=0) if intensity.crop_nonzero or intensity.mask == "nonzero" else None
    if intensity.crop_nonzero and nonzero is not None:  # (nonzero is computed when crop_nonzero is set)
        box = mask_box(nonzero)
        if box is None:
            raise DataError(case_id, "is zero everywhere; expected a skull-stripped scan with a brain")
        image, nonzero = crop(image, box), crop(nonzero, box)
        geometry = geometry.cropped(box[0], shape)
    mask = nonzero if intensity.mask == "nonzero" else None
    case = Case(case_id, clip_and_zscore(image, mask, intensity.clip_percentile), None, geometry)
    return resample_case(case, recipe.resample) if recipe.resample is not None else case


def spacing_mismatch(recipe: Recipe, spacing: Sequence[float], tolerance: float = 0.25) -> str | None:
    """A warning when a scan's spacing (mm) is more than ``tolerance`` (a fraction) away from the
    training spacing on some axis and training did not resample (a network sees structures at the
    size in voxels it was trained on); None otherwise."""
    if recipe.resample is not None:
        return None
    off = [abs(s - t) / t > tolerance for s, t in zip(spacing, recipe.spacing, strict=True)]
    if not any(off):
        return None
    fmt = lambda v: "x".join(f"{x:.3g}" for x in v)  # noqa: E731
    return (
        f"spacing {fmt(spacing)} mm differs from the training data's {fmt(recipe.spacing)} mm by more than "
        f"{tolerance:.0%}; the model was trained without resampling (preprocess.resample), so results may suffer"
    )
