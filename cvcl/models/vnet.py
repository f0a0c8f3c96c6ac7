"""V-Net (UA-MT variant) with the feature taps the CVCL losses use and a projection head.

Shapes for an input ``(B, C_in, X, Y, Z)`` with every spatial size divisible by 16 and
``f = base_filters``:

- ``logits``: ``(B, n_classes, X, Y, Z)``
- ``d9``: the last decoder feature, ``(B, f, X, Y, Z)``
- ``center``: the 2f-channel decoder stage at half resolution, ``(B, 2f, X/2, Y/2, Z/2)``
- :meth:`VNet.project` maps ``d9`` to L2-normalised embeddings ``(B, embed_dim, X, Y, Z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cvcl.errors import ParamError
from cvcl.precision import full_precision

NORMALIZATIONS = ("batch", "instance", "none")  # model.norm's Literal (cvcl.models.config.Norm; tested)


class BatchNorm(nn.BatchNorm3d):
    """BatchNorm3d whose eval mode can normalise each window by its own statistics.

    ``window_statistics`` off (the default): exactly ``nn.BatchNorm3d``, the running averages in
    eval mode, as the reference evaluates. On: in eval mode each sample is normalised over its
    own voxels (with the learnt scale and shift; the running averages neither used nor changed),
    so a window's prediction does not depend on the windows batched with it. At LA-mini's size a
    network trained on batches of two crops depends on batch statistics, and the running averages
    stand in for them badly (docs/results-la.md, "It is the running statistics").
    """

    window_statistics: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.window_statistics:
            return super().forward(x)
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


BN_STATISTICS = ("running", "window")  # model.bn_statistics's Literal (cvcl.models.config)


def set_bn_statistics(network: nn.Module, mode: str) -> None:
    """Switch every :class:`BatchNorm` of ``network`` to ``mode`` (:data:`BN_STATISTICS`) at inference."""
    for module in network.modules():
        if isinstance(module, BatchNorm):
            module.window_statistics = mode == "window"


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return BatchNorm(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    return nn.Identity()


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that computes in float32 under CPU bfloat16 autocast when its input is
    smaller than the kernel along a spatial axis (the deepest V-Net stage of a small patch).

    PyTorch 2.13's oneDNN bfloat16 kernels give a 3x3x3 padded convolution on a map two voxels
    deep a weight gradient that changes from call to call on the same input and is now and then
    inf or NaN (measured on a Zen 4 CPU with AVX512_BF16: 13 distinct gradients in 60 identical
    calls at 4x64x2x2x2; none at 3 voxels or more, none in float32). One such step puts inf into
    the weights, and bfloat16 has no gradient scaler to skip it. Maps this small cost nothing in
    float32. The parameters and the float32 path are those of ``nn.Conv3d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and any(s < k for s, k in zip(x.shape[2:], self.kernel_size, strict=True))
        ):
            with full_precision(x.device):
                return super().forward(x.float())
        return super().forward(x)


class ConvStage(nn.Sequential):
    """``n`` times (3x3x3 conv, padding 1 -> norm -> ReLU)."""

    def __init__(self, n: int, in_ch: int, out_ch: int, norm: str) -> None:
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [
                Conv3d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1),
                _norm(norm, out_ch),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


class Down(nn.Sequential):
    """Halve the resolution with a 2x2x2, stride-2 convolution (-> norm -> ReLU)."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        super().__init__(nn.Conv3d(in_ch, out_ch, 2, stride=2), _norm(norm, out_ch), nn.ReLU(inplace=True))


class Up(nn.Sequential):
    """Double the resolution with a 2x2x2, stride-2 transposed convolution (-> norm -> ReLU)."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        super().__init__(nn.ConvTranspose3d(in_ch, out_ch, 2, stride=2), _norm(norm, out_ch), nn.ReLU(inplace=True))


class ProjectionHead(nn.Module):
    """1x1x1 conv ``in_ch -> hidden`` -> ReLU -> 1x1x1 conv ``hidden -> embed_dim``, then L2
    normalisation over channels.

    ``hidden`` defaults to ``in_ch``. At f = 8 that head (8 -> 8 -> 64) gives embeddings of rank
    at most 8 whose anchors start at a mean cosine near 0.9: the InfoNCE sits at the log of the
    anchor count and has little to learn from (docs/method.md, "The VCL head").
    """

    def __init__(self, in_ch: int, embed_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or in_ch
        self.net = nn.Sequential(nn.Conv3d(in_ch, hidden, 1), nn.ReLU(inplace=True), nn.Conv3d(hidden, embed_dim, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(features), dim=1)


@dataclass
class VNetOutput:
    logits: torch.Tensor
    d9: torch.Tensor
    center: torch.Tensor


class VNet(nn.Module):
    """V-Net: 5 encoder stages of 1, 2, 3, 3, 3 convolutions, decoder stages of 3, 3, 2, 1,
    additive skip connections, Dropout3d on the bottleneck and the last decoder feature.

    Args:
        in_channels: image channels (modalities).
        n_classes: output classes (2 for binary segmentation).
        base_filters: ``f``, channels of the first stage (16 in the paper).
        dropout: Dropout3d probability in training (0 disables it).
        norm: ``"batch"`` (the paper), ``"instance"`` or ``"none"``.
        embed_dim: channels of the projection head's embedding (0: no head).
        embed_hidden: the projection head's hidden width (None: ``base_filters``).
        bn_statistics: batch norm in eval mode: ``running`` averages, or each ``window``'s own
            statistics (:class:`BatchNorm`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        base_filters: int = 16,
        dropout: float = 0.5,
        norm: str = "batch",
        embed_dim: int = 64,
        embed_hidden: int | None = None,
        bn_statistics: str = "running",
    ) -> None:
        super().__init__()
        if norm not in NORMALIZATIONS:
            raise ValueError(f"norm must be one of {NORMALIZATIONS}, got {norm!r}")
        if bn_statistics not in BN_STATISTICS:
            raise ValueError(f"bn_statistics must be one of {BN_STATISTICS}, got {bn_statistics!r}")
        f = base_filters
        self.base_filters = f
        self.enc = nn.ModuleList(
            [
                ConvStage(1, in_channels, f, norm),
                ConvStage(2, 2 * f, 2 * f, norm),
                ConvStage(3, 4 * f, 4 * f, norm),
                ConvStage(3, 8 * f, 8 * f, norm),
                ConvStage(3, 16 * f, 16 * f, norm),
            ]
        )
        self.down = nn.ModuleList([Down(c, 2 * c, norm) for c in (f, 2 * f, 4 * f, 8 * f)])
        self.up = nn.ModuleList([Up(2 * c, c, norm) for c in (8 * f, 4 * f, 2 * f, f)])
        self.dec = nn.ModuleList(
            [
                ConvStage(3, 8 * f, 8 * f, norm),
                ConvStage(3, 4 * f, 4 * f, norm),
                ConvStage(2, 2 * f, 2 * f, norm),
                ConvStage(1, f, f, norm),
            ]
        )
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv3d(f, n_classes, 1)
        self.projection = ProjectionHead(f, embed_dim, embed_hidden) if embed_dim > 0 else None
        set_bn_statistics(self, bn_statistics)

    def forward(self, x: torch.Tensor) -> VNetOutput:
        skips = []
        for stage, down in zip(self.enc[:4], self.down, strict=True):
            x = stage(x)
            skips.append(x)
            x = down(x)
        x = self.dropout(self.enc[4](x))
        center = x
        for i, (up, stage) in enumerate(zip(self.up, self.dec, strict=True)):
            x = stage(up(x) + skips[3 - i])
            if i == 2:
                center = x
        d9 = x
        logits = self.head(self.dropout(d9))
        return VNetOutput(logits=logits, d9=d9, center=center)

    def project_rows(self, features: torch.Tensor) -> torch.Tensor:
        """Embed gathered voxel features ``(M, f)`` -> unit vectors ``(M, embed_dim)``: the head is
        1x1x1 convolutions, so this equals projecting the volume and gathering after."""
        return self.project(features.T[None, :, :, None, None])[0, :, :, 0, 0].T

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Embed voxel features ``(B, f, ...)`` -> unit vectors ``(B, embed_dim, ...)``."""
        if self.projection is None:
            raise RuntimeError("this VNet was built with embed_dim=0 (no projection head)")
        return self.projection(features)


def check_patch(patch: tuple[int, ...], name: str) -> None:
    """ParamError naming ``name`` unless every size of ``patch`` is divisible by 16 (the V-Net
    halves its input four times)."""
    if any(s % 16 for s in patch):
        raise ParamError(name, list(patch), "3 sizes divisible by 16 (the V-Net downsamples 4 times)")


class VNetLogits(nn.Module):
    """A V-Net as other tools call a segmentation network: image ``(B, C, X, Y, Z)`` ->
    class logits ``(B, K, X, Y, Z)`` (the MLflow model's form: MLflow expects one tensor out)."""

    def __init__(self, vnet: VNet) -> None:
        super().__init__()
        self.vnet = vnet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vnet(x).logits
