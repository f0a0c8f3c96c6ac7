"""Typed, validated settings of the train stage, read from params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as section

from cvcl.errors import ParamError
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig, model_config
from cvcl.params import Params
from cvcl.settings import EXECUTION_ONLY, SECTION, ExperimentConfig, is_execution, params_keys

PatchSide = Annotated[int, Field(ge=16)]  # voxels


@section(frozen=True, config=SECTION)
class TrainConfig:
    """Optimisation and where it runs (``train`` in params.yaml)."""

    iterations: int = Field(default=1000, ge=1, description="training iterations")
    batch_size: int = Field(default=4, ge=1, description="labeled + unlabeled volumes per step")
    labeled_bs: int = Field(default=2, ge=1, description="labeled volumes per step")
    patch: tuple[PatchSide, PatchSide, PatchSide] = Field(
        default=(48, 48, 32), description="training patch in voxels, each divisible by 16"
    )
    optimizer: Literal["sgd", "adam"] = Field(default="sgd", description="the optimizer")
    lr: float = Field(default=0.01, gt=0.0, description="learning rate")
    momentum: float = Field(default=0.9, ge=0.0, le=1.0, description="SGD momentum (Adam: beta1)")
    weight_decay: float = Field(default=0.0001, ge=0.0, description="weight decay")
    lr_schedule: Literal["poly", "step"] = Field(
        default="poly", description="the learning-rate decay: poly | step (UA-MT's)"
    )
    lr_power: float = Field(default=0.9, ge=0.0, description="poly decay exponent")
    lr_step: int = Field(default=2500, ge=1, description="step decay: multiply the lr by lr_gamma every N iterations")
    lr_gamma: float = Field(default=0.1, ge=0.0, le=1.0, description="step decay factor")
    ema_decay: float = Field(default=0.99, ge=0.0, le=1.0, description="teacher EMA decay")
    ema_decay_late: float | None = Field(
        default=None, ge=0.0, le=1.0, description="teacher EMA decay once the consistency ramp is at its maximum"
    )
    workers: int = Field(default=0, ge=0, description="DataLoader worker processes", json_schema_extra=EXECUTION_ONLY)
    threads: int = Field(
        default=0, ge=0, description="torch CPU threads (0: torch's default)", json_schema_extra=EXECUTION_ONLY
    )
    device: Annotated[str, Field(min_length=1)] = Field(
        default="auto", description="where to train: auto | cpu | cuda | cuda:N", json_schema_extra=EXECUTION_ONLY
    )
    amp: bool = Field(default=True, description="mixed precision (CUDA only)")
    precision: Literal["float32", "bf16"] = Field(
        default="float32",
        description="float32, or bf16: bfloat16 autocast (and channels_last_3d) on CPUs with AVX512_BF16/AMX or CUDA",
    )
    channels_last: bool = Field(default=True, description="channels_last_3d memory format (CUDA only)")
    val_every: int = Field(default=0, ge=0, description="validate every N iterations on the val split (0: never)")
    checkpoint: Literal["last", "best_val"] = Field(default="last", description="the weights kept: last | best_val")
    val_weights: Literal["student", "teacher"] = Field(
        default="student", description="the network the validation scores: student | teacher"
    )
    split_bn: bool = Field(default=False, description="the student forwards labeled and unlabeled halves separately")
    checkpoint_every: int = Field(
        default=100,
        ge=0,
        description="save the training state every N iterations (0: never)",
        json_schema_extra=EXECUTION_ONLY,
    )
    deterministic: bool = Field(
        default=False, description="CUDA: reproducible kernels, no cuDNN autotuning", json_schema_extra=EXECUTION_ONLY
    )


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
        return {k: v for k, v in self.tracked.items() if not is_execution(k)}


def training_settings(params: Params) -> TrainingSettings:
    """Read and check the train stage's sections (ParamError naming the first bad key)."""
    return TrainingSettings(
        experiment=params.config(ExperimentConfig, ""),
        train=train_config(params),
        losses=loss_config(params),
        model=model_config(params, in_channels=1),
        tracked=params.flat(TRACKED),
    )
