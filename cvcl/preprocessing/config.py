"""The ``preprocess`` section of params.yaml as typed settings for the converters."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic.dataclasses import dataclass

from cvcl.params import Params
from cvcl.settings import SECTION, Expected
from cvcl.sources.layouts import Modality


def _one_or_three(value: Any) -> Any:
    return (value,) * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _ordered(value: tuple[int, int]) -> tuple[int, int]:
    if value[0] >= value[1]:
        raise ValueError("min < max")
    return value


def _distinct(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError("each once")
    return value


Mm = Annotated[float, Field(gt=0, le=100)]
_MM = {"type": "number", "exclusiveMinimum": 0, "maximum": 100}
# a spacing in mm: one value for every axis, or [x, y, z]
Spacing = Annotated[
    tuple[Mm, Mm, Mm],
    BeforeValidator(_one_or_three),
    WithJsonSchema({"anyOf": [_MM, {"type": "array", "items": _MM, "minItems": 3, "maxItems": 3}]}),
    Expected("null, a spacing in mm (0 < s <= 100) or three of them [x, y, z]"),
]
Voxels = Annotated[int, Field(ge=0)]
# margins drawn from [min, max), in voxels
Margin = Annotated[tuple[Voxels, Voxels], AfterValidator(_ordered), Expected("[min, max) with 0 <= min < max (voxels)")]
Size = Annotated[int, Field(ge=1)]
Modalities = Annotated[
    tuple[Modality, ...], Field(min_length=1, json_schema_extra={"uniqueItems": True}), AfterValidator(_distinct)
]


@dataclass(frozen=True, config=SECTION)
class CropConfig:
    """UA-MT's crop around the atrium (``la-nrrd``; ``preprocess.crop``), in voxels.

    Each side of the atrium's bounding box gets its own margin drawn from ``[lo, hi)``:
    ``margin_inplane`` along X and Y, ``margin_through`` along Z (None: keep every slice, as the
    released h5 files do). The box then grows evenly to at least ``min_size`` where the volume
    allows, so the paper's patch fits. Draws are seeded by ``seed`` and the case id, so a case's
    crop does not depend on which other cases are present.
    """

    margin_inplane: Margin = Field(
        default=(10, 20), description="random margin per side along X and Y, drawn from [min, max)"
    )
    margin_through: Margin | None = Field(default=(5, 10), description="along Z; null keeps every slice")
    min_size: tuple[Size, Size, Size] = Field(
        default=(112, 112, 80), description="grow the box to at least this size where the scan allows"
    )
    seed: int = Field(default=0, ge=0, description="crop draws (with the case id)")


@dataclass(frozen=True, config=SECTION)
class PreprocessConfig:
    """Settings of every converter (``preprocess`` in params.yaml); each reads only its own."""

    modalities: Modalities = Field(
        default=("flair",), description="brats2019, synthetic-brats: image channels in this order"
    )
    resample: Spacing | None = Field(
        default=None, description="target spacing in mm, one value or [x, y, z] (null: the source's)"
    )
    crop: CropConfig = field(default_factory=CropConfig)


def preprocess_config(params: Params) -> PreprocessConfig:
    """Read and check ``preprocess.*`` (defaults where the section or a key is absent)."""
    return params.config(PreprocessConfig, "preprocess")
