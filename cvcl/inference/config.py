"""The ``infer`` section of params.yaml: how the sliding window predicts a case.

Kept apart from :mod:`cvcl.inference.predictor` (torch, scipy) because every stage reads this
declaration through :mod:`cvcl.settings` when it checks params.yaml's keys.
"""

from __future__ import annotations

from dataclasses import asdict, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from cvcl.errors import ParamError
from cvcl.settings import EXECUTION_ONLY, SECTION, SETTINGS

if TYPE_CHECKING:
    from cvcl.params import Params

Step = Annotated[int, Field(ge=1)]  # voxels


@dataclass(frozen=True, config=SECTION)
class InferConfig:
    """``infer`` in params.yaml, and the patch (the training patch, ``train.patch``; not a key of
    ``infer``).

    ``patch`` and ``stride`` are in voxels per axis (paper: 112x112x80 with 18/18/4);
    ``batch_size`` windows per forward pass; ``gaussian`` Gaussian instead of uniform
    averaging; ``tta_flip`` averages over the in-plane flips; ``largest_component`` keeps the
    largest 26-connected component; ``weights`` the checkpoint's student or teacher;
    ``device`` auto, cpu or cuda[:N]; ``amp`` float16 autocast (CUDA only).
    """

    # train.patch's declared default, looked up when an InferConfig is made (the train section is
    # declared in cvcl.training.config, which the infer stage must not import)
    patch: tuple[int, int, int] = field(default_factory=lambda: tuple(SETTINGS["train.patch"].default))
    stride: tuple[Step, Step, Step] = Field(default=(16, 16, 8), description="sliding-window step in voxels")
    batch_size: int = Field(default=4, ge=1, description="windows per forward pass")
    gaussian: bool = Field(default=False, description="Gaussian importance weighting instead of a uniform mean")
    tta_flip: bool = Field(default=False, description="average over X/Y flips")
    largest_component: bool = Field(default=False, description="keep the largest connected component")
    weights: Literal["student", "teacher"] = Field(
        default="student", description="the network that predicts: student | teacher"
    )
    device: Annotated[str, Field(min_length=1)] = Field(
        default="auto", description="where to predict: auto | cpu | cuda | cuda:N", json_schema_extra=EXECUTION_ONLY
    )
    amp: bool = Field(default=True, description="mixed precision (CUDA only)")

    def window_settings(self) -> dict:
        """The settings that decide the prediction (not where it runs): what a logged model keeps."""
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k not in ("device", "amp")
        }


def check_window(patch: tuple[int, ...], stride: tuple[int, ...], patch_name: str, stride_name: str) -> None:
    """ParamError naming the parameter (or option) when the V-Net cannot take ``patch`` or the
    windows of ``stride`` would skip voxels."""
    from cvcl.models.vnet import check_patch  # torch: not when the settings read this module

    check_patch(patch, patch_name)
    if any(s > p for s, p in zip(stride, patch, strict=True)):
        raise ParamError(
            stride_name, list(stride), f"steps no larger than the patch {list(patch)} (else voxels are skipped)"
        )


def infer_config(params: Params) -> InferConfig:
    """Read and check ``train.patch`` and the ``infer`` section (ParamError on a bad value)."""
    patch = tuple(params.get("train.patch"))
    stride = tuple(params.get("infer.stride"))
    check_window(patch, stride, "train.patch", "infer.stride")
    return params.config(InferConfig, "infer", patch=patch, stride=stride)
