"""The ``preprocess`` section of params.yaml as typed settings for the converters."""

from __future__ import annotations

from dataclasses import dataclass, field

from cvcl.errors import ParamError
from cvcl.params import Params
from cvcl.settings import Spacing, setting


@dataclass(frozen=True)
class CropConfig:
    """UA-MT's crop around the atrium (``la-nrrd``; ``preprocess.crop``), in voxels.

    Each side of the atrium's bounding box gets its own margin drawn from ``[lo, hi)``:
    ``margin_inplane`` along X and Y, ``margin_through`` along Z (None: keep every slice, as the
    released h5 files do). The box then grows evenly to at least ``min_size`` where the volume
    allows, so the paper's patch fits. Draws are seeded by ``seed`` and the case id, so a case's
    crop does not depend on which other cases are present.
    """

    margin_inplane: tuple[int, int] = setting(
        (10, 20), "random margin per side along X and Y, drawn from [min, max)", min=0
    )
    margin_through: tuple[int, int] | None = setting((5, 10), "along Z; null keeps every slice", min=0)
    min_size: tuple[int, int, int] = setting(
        (112, 112, 80), "grow the box to at least this size where the scan allows", min=1
    )
    seed: int = setting(0, "crop draws (with the case id)", min=0)


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of every converter (``preprocess`` in params.yaml); each reads only its own."""

    modalities: tuple[str, ...] = setting(
        ("flair",),
        "brats2019, synthetic-brats: image channels in this order",
        choices="cvcl.sources.layouts:BRATS_MODALITIES",
    )
    resample: Spacing | None = setting(None, "target spacing in mm, one value or [x, y, z] (null: the source's)")
    crop: CropConfig = field(default_factory=CropConfig)


def _margin(
    params: Params, name: str, default: tuple[int, int] | None, *, optional: bool = False
) -> tuple[int, int] | None:
    value = params.raw(name, default=default)
    expected = "[min, max) with 0 <= min < max (voxels)" + (" or null" if optional else "")
    if value is None and optional:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 0 <= value[0] < value[1]
    ):
        raise ParamError(name, value, expected)
    return int(value[0]), int(value[1])


def preprocess_config(params: Params) -> PreprocessConfig:
    """Read and check ``preprocess.*`` (defaults where the section or a key is absent)."""
    p = "preprocess"
    d = PreprocessConfig()
    modalities = params.get(f"{p}.modalities")
    inplane = _margin(params, f"{p}.crop.margin_inplane", d.crop.margin_inplane)
    assert inplane is not None  # not optional: _margin returns a margin or raises
    crop = CropConfig(
        margin_inplane=inplane,
        margin_through=_margin(params, f"{p}.crop.margin_through", d.crop.margin_through, optional=True),
        min_size=tuple(params.get(f"{p}.crop.min_size")),
        seed=params.get(f"{p}.crop.seed"),
    )
    return PreprocessConfig(modalities=tuple(modalities), resample=params.get(f"{p}.resample"), crop=crop)
