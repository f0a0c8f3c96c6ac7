"""Typed, validated settings of the train stage, read from params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cvcl.errors import ParamError
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig, model_config
from cvcl.params import Params
from cvcl.settings import EXECUTION, ExperimentConfig, params_keys, setting


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and where it runs (``train`` in params.yaml)."""

    iterations: int = setting(1000, "training iterations", min=1)
    batch_size: int = setting(4, "labeled + unlabeled volumes per step", min=1)
    labeled_bs: int = setting(2, "labeled volumes per step", min=1)
    patch: tuple[int, int, int] = setting((48, 48, 32), "training patch in voxels, each divisible by 16", min=16)
    optimizer: str = setting("sgd", "the optimizer", choices=("sgd", "adam"))
    lr: float = setting(0.01, "learning rate", min=0.0, min_exclusive=True)
    momentum: float = setting(0.9, "SGD momentum (Adam: beta1)", min=0.0, max=1.0)
    weight_decay: float = setting(0.0001, "weight decay", min=0.0)
    lr_schedule: str = setting("poly", "the learning-rate decay: poly | step (UA-MT's)", choices=("poly", "step"))
    lr_power: float = setting(0.9, "poly decay exponent", min=0.0)
    lr_step: int = setting(2500, "step decay: multiply the lr by lr_gamma every N iterations", min=1)
    lr_gamma: float = setting(0.1, "step decay factor", min=0.0, max=1.0)
    ema_decay: float = setting(0.99, "teacher EMA decay", min=0.0, max=1.0)
    workers: int = setting(0, "DataLoader worker processes", min=0, execution=True)
    threads: int = setting(0, "torch CPU threads (0: torch's default)", min=0, execution=True)
    device: str = setting("auto", "where to train: auto | cpu | cuda | cuda:N", execution=True)
    amp: bool = setting(True, "mixed precision (CUDA only)")
    precision: str = setting(
        "float32",
        "float32, or bf16: bfloat16 autocast (and channels_last_3d) on CPUs with AVX512_BF16/AMX or CUDA",
        choices=("float32", "bf16"),
    )
    channels_last: bool = setting(True, "channels_last_3d memory format (CUDA only)")
    val_every: int = setting(0, "validate every N iterations on the val split (0: never)", min=0)
    checkpoint: str = setting("last", "the weights kept: last | best_val", choices=("last", "best_val"))
    val_weights: str = setting(
        "student", "the network the validation scores: student | teacher", choices=("student", "teacher")
    )
    split_bn: bool = setting(False, "the student forwards labeled and unlabeled halves separately")
    checkpoint_every: int = setting(100, "save the training state every N iterations (0: never)", min=0, execution=True)
    deterministic: bool = setting(False, "CUDA: reproducible kernels, no cuDNN autotuning", execution=True)


def train_config(params: Params) -> TrainConfig:
    """Read and check ``train.*``: ParamError on a value out of range, a labeled share larger than
    the batch, or a patch the V-Net cannot take."""
    from cvcl.models.vnet import check_patch  # torch: not when the settings read this module

    p = "train"
    cfg = params.config(TrainConfig, p)
    if cfg.labeled_bs > cfg.batch_size:
        raise ParamError(f"{p}.labeled_bs", cfg.labeled_bs, f"an integer in [1, {cfg.batch_size}] (train.batch_size)")
    check_patch(cfg.patch, f"{p}.patch")
    return cfg


def loss_config(params: Params) -> LossConfig:
    """Read and check ``loss.*``."""
    return params.config(LossConfig, "loss")


# The sections the train stage reads. Their keys, as params.yaml holds them, are the run's MLflow
# params and, but for the execution ones, its resume identity; dvc.yaml's train stage declares
# the same keys as its params (tests/test_settings.py).
TRAIN_SECTIONS = (ExperimentConfig, ModelConfig, TrainConfig, LossConfig)
TRACKED = params_keys(TRAIN_SECTIONS)  # ["dataset", "labeled", "seed", "method", "model", "train", "loss"]


@dataclass(frozen=True)
class TrainingSettings:
    """Everything the train stage reads from params.yaml, read and checked once at its entry
    and passed down (nothing below the stage reads params.yaml)."""

    experiment: ExperimentConfig
    train: TrainConfig
    losses: LossConfig
    model: ModelConfig  # in_channels and n_classes: the defaults until the data decides them
    tracked: dict[str, Any]  # TRACKED's keys flattened (``train.lr``): the run's MLflow params

    @property
    def identity(self) -> dict[str, Any]:
        """The tracked params but the execution ones: a change in where or how fast training
        runs is no reason to start afresh, so these decide which checkpoint resumes."""
        return {k: v for k, v in self.tracked.items() if k not in EXECUTION}


def training_settings(params: Params) -> TrainingSettings:
    """Read and check the train stage's sections (ParamError naming the first bad key)."""
    return TrainingSettings(
        experiment=params.config(ExperimentConfig, ""),
        train=train_config(params),
        losses=loss_config(params),
        model=model_config(params, in_channels=1),
        tracked=params.flat(TRACKED),
    )
