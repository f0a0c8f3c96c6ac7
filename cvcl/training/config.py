"""Typed, validated settings of the train stage, read from params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from cvcl.errors import ParamError
from cvcl.methods import LossConfig
from cvcl.models.vnet import check_patch
from cvcl.params import Params
from cvcl.settings import default


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (``train`` in params.yaml)."""

    iterations: int = default("train.iterations")
    batch_size: int = default("train.batch_size")
    labeled_bs: int = default("train.labeled_bs")
    patch: tuple[int, int, int] = default("train.patch")
    optimizer: str = default("train.optimizer")
    lr: float = default("train.lr")
    momentum: float = default("train.momentum")
    weight_decay: float = default("train.weight_decay")
    lr_power: float = default("train.lr_power")
    ema_decay: float = default("train.ema_decay")
    workers: int = default("train.workers")
    threads: int = default("train.threads")
    device: str = default("train.device")
    amp: bool = default("train.amp")
    channels_last: bool = default("train.channels_last")
    val_every: int = default("train.val_every")
    checkpoint: str = default("train.checkpoint")
    val_weights: str = default("train.val_weights")
    split_bn: bool = default("train.split_bn")
    checkpoint_every: int = default("train.checkpoint_every")
    deterministic: bool = default("train.deterministic")


def train_config(params: Params) -> TrainConfig:
    p = "train"
    cfg = params.config(TrainConfig, p)
    if cfg.labeled_bs > cfg.batch_size:
        raise ParamError(f"{p}.labeled_bs", cfg.labeled_bs, f"an integer in [1, {cfg.batch_size}] (train.batch_size)")
    check_patch(cfg.patch, f"{p}.patch")
    return cfg


def loss_config(params: Params) -> LossConfig:
    return params.config(LossConfig, "loss")
