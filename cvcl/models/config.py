"""The network's shape, read from ``model`` in params.yaml and stored in checkpoints."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from cvcl.params import Params
from cvcl.settings import SECTION

if TYPE_CHECKING:
    from cvcl.models.vnet import VNet


Norm = Literal["batch", "instance", "none"]


@dataclass(frozen=True, config=SECTION)
class ModelConfig:
    """Network shape (``model`` in params.yaml); saved in the checkpoint to rebuild the net.

    ``in_channels`` and ``n_classes`` are not parameters: the data decides them.
    """

    in_channels: int = 1
    n_classes: int = 2
    base_filters: int = Field(default=8, ge=1, description="f: channels of the first V-Net stage")
    dropout: float = Field(default=0.5, ge=0.0, le=0.95, description="Dropout3d probability")
    norm: Norm = Field(default="instance", description="the V-Net's normalisation")
    embed_dim: int = Field(default=64, ge=1, description="projection head output")
    embed_hidden: int = Field(default=64, ge=1, description="projection head hidden width")
    bn_statistics: Literal["running", "window"] = Field(
        default="running", description="batch norm at inference: running averages | each window's own statistics"
    )

    def as_dict(self) -> dict:
        return asdict(self)


def model_config(params: Params, in_channels: int) -> ModelConfig:
    return params.config(ModelConfig, "model", in_channels=in_channels, n_classes=2)


def build_model(cfg: ModelConfig, with_projection: bool = True) -> VNet:
    """A V-Net of this shape; without the projection head when no loss needs it."""
    from cvcl.models.vnet import VNet  # torch: not when the settings read this module

    return VNet(
        cfg.in_channels,
        cfg.n_classes,
        cfg.base_filters,
        cfg.dropout,
        cfg.norm,
        cfg.embed_dim if with_projection else 0,
        cfg.embed_hidden,
        cfg.bn_statistics,
    )
