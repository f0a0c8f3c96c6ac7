"""The ``infer`` section of params.yaml: how the sliding window predicts a case.

Kept apart from :mod:`cvcl.inference.predictor` (torch, scipy) because every stage reads this
declaration through :mod:`cvcl.settings` when it checks params.yaml's keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from cvcl.errors import ParamError
from cvcl.settings import default, setting

if TYPE_CHECKING:
    from cvcl.params import Params


@dataclass(frozen=True)
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
    patch: tuple[int, int, int] = field(default_factory=lambda: default("train.patch"))
    stride: tuple[int, int, int] = setting((16, 16, 8), "sliding-window step in voxels", min=1)
    batch_size: int = setting(4, "windows per forward pass", min=1)
    gaussian: bool = setting(False, "Gaussian importance weighting instead of a uniform mean")
    tta_flip: bool = setting(False, "average over X/Y flips")
    largest_component: bool = setting(False, "keep the largest connected component")
    weights: str = setting("student", "the network that predicts: student | teacher", choices=("student", "teacher"))
    device: str = setting("auto", "where to predict: auto | cpu | cuda | cuda:N", execution=True)
    amp: bool = setting(True, "mixed precision (CUDA only)")

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
