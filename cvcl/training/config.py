"""Typed, validated settings of the train stage, read from params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from cvcl.errors import ParamError
from cvcl.params import Params
from cvcl.training.objective import FEATURE_TAPS, METHODS, LossConfig
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
    split_bn: bool = default("train.split_bn")
    checkpoint_every: int = default("train.checkpoint_every")
    deterministic: bool = default("train.deterministic")


def train_config(params: Params) -> TrainConfig:
    p = "train"
    cfg = TrainConfig(
        iterations=params.int(f"{p}.iterations", min=1),
        batch_size=params.int(f"{p}.batch_size", min=1),
        labeled_bs=params.int(f"{p}.labeled_bs", min=1),
        patch=tuple(params.int_list(f"{p}.patch", length=3, min=16)),
        optimizer=params.choice(f"{p}.optimizer", ("sgd", "adam")),
        lr=params.float(f"{p}.lr", min=0.0, min_exclusive=True),
        momentum=params.float(f"{p}.momentum", min=0.0, max=1.0),
        weight_decay=params.float(f"{p}.weight_decay", min=0.0),
        lr_power=params.float(f"{p}.lr_power", min=0.0),
        ema_decay=params.float(f"{p}.ema_decay", min=0.0, max=1.0),
        workers=params.int(f"{p}.workers", min=0),
        threads=params.int(f"{p}.threads", min=0),
        device=params.str(f"{p}.device"),
        amp=params.bool(f"{p}.amp"),
        channels_last=params.bool(f"{p}.channels_last"),
        val_every=params.int(f"{p}.val_every", min=0),
        checkpoint=params.choice(f"{p}.checkpoint", ("last", "best_val")),
        split_bn=params.bool(f"{p}.split_bn"),
        checkpoint_every=params.int(f"{p}.checkpoint_every", min=0),
        deterministic=params.bool(f"{p}.deterministic"),
    )
    if cfg.labeled_bs > cfg.batch_size:
        raise ParamError(f"{p}.labeled_bs", cfg.labeled_bs, f"an integer in [1, {cfg.batch_size}] (train.batch_size)")
    bad = [s for s in cfg.patch if s % 16]
    if bad:
        raise ParamError(f"{p}.patch", list(cfg.patch), "3 sizes divisible by 16 (the V-Net downsamples 4 times)")
    return cfg


def loss_config(params: Params) -> LossConfig:
    p = "loss"
    return LossConfig(
        consistency=params.float(f"{p}.consistency", min=0.0),
        rampup_epochs=params.float(f"{p}.rampup_epochs", min=0.0),
        iters_per_epoch=params.int(f"{p}.iters_per_epoch", min=1),
        mt_weight=params.float(f"{p}.mt_weight", min=0.0),
        pcl_weight=params.float(f"{p}.pcl_weight", min=0.0),
        vcl_weight=params.float(f"{p}.vcl_weight", min=0.0),
        teacher_noise=params.float(f"{p}.teacher_noise", min=0.0),
        temperature=params.float(f"{p}.temperature", min=0.0, min_exclusive=True),
        n_anchor=params.int(f"{p}.n_anchor", min=2),
        proto_scale=params.float(f"{p}.proto_scale", min=0.0, min_exclusive=True),
        prototype_feature=params.choice(f"{p}.prototype_feature", FEATURE_TAPS),
        uamt_passes=params.int(f"{p}.uamt_passes", min=1),
    )


def method(params: Params) -> str:
    return params.choice("method", METHODS)
