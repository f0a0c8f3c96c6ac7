"""The network's shape, read from ``model`` in params.yaml and stored in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cvcl.models.vnet import VNet
from cvcl.params import Params
from cvcl.settings import default


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (``model`` in params.yaml); saved in the checkpoint to rebuild the net."""

    in_channels: int = 1
    n_classes: int = 2
    base_filters: int = default("model.base_filters")
    dropout: float = default("model.dropout")
    norm: str = default("model.norm")
    embed_dim: int = default("model.embed_dim")
    embed_hidden: int = default("model.embed_hidden")

    def as_dict(self) -> dict:
        return asdict(self)


def model_config(params: Params, in_channels: int) -> ModelConfig:
    return params.config(ModelConfig, "model", in_channels=in_channels, n_classes=2)


def build_model(cfg: ModelConfig, with_projection: bool = True) -> VNet:
    """A V-Net of this shape; without the projection head when no loss needs it."""
    return VNet(cfg.in_channels, cfg.n_classes, cfg.base_filters, cfg.dropout, cfg.norm,
                cfg.embed_dim if with_projection else 0, cfg.embed_hidden)
