"""The network's shape, read from ``model`` in params.yaml and stored in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cvcl.params import Params
from cvcl.settings import setting

if TYPE_CHECKING:
    from cvcl.models.vnet import VNet


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (``model`` in params.yaml); saved in the checkpoint to rebuild the net.

    ``in_channels`` and ``n_classes`` are not parameters: the data decides them.
    """

    in_channels: int = 1
    n_classes: int = 2
    base_filters: int = setting(8, "f: channels of the first V-Net stage", min=1)
    dropout: float = setting(0.5, "Dropout3d probability", min=0.0, max=0.95)
    norm: str = setting("instance", "the V-Net's normalisation", choices="cvcl.models.vnet:NORMALIZATIONS")
    embed_dim: int = setting(64, "projection head output", min=1)
    embed_hidden: int = setting(64, "projection head hidden width", min=1)

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
    )
