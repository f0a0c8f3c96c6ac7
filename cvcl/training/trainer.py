"""The training loop shared by every method."""

from __future__ import annotations

import copy
import random
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvcl.data.dataset import PatchDataset
from cvcl.data.sampler import TwoStreamBatchSampler
from cvcl.models.vnet import VNet
from cvcl.models.config import ModelConfig, build_model
from cvcl.training.config import TrainConfig
from cvcl.device import amp_dtype, autocast, configure_backend, memory_format
from cvcl.training.ema import make_teacher, update_ema
from cvcl.training.objective import Objective
from cvcl.training.schedule import poly_lr

StepCallback = Callable[[int, dict[str, float]], None]
Validator = Callable[[VNet], float]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _loader(dataset: PatchDataset, cfg: TrainConfig, n_labeled_cases: int, semi: bool, seed: int) -> DataLoader:
    labeled = list(range(n_labeled_cases))
    unlabeled = list(range(n_labeled_cases, len(dataset))) if semi else []
    batch = cfg.batch_size if semi else cfg.labeled_bs
    sampler = TwoStreamBatchSampler(labeled, unlabeled, batch, cfg.labeled_bs, cfg.iterations, seed)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=cfg.workers > 0)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper), or Adam (``momentum`` is then beta1)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999),
                                weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class TrainResult:
    def __init__(self, student: VNet, teacher: VNet | None, best_step: int | None, best_val: float | None):
        self.student, self.teacher, self.best_step, self.best_val = student, teacher, best_step, best_val


def train(dataset: PatchDataset, model_cfg: ModelConfig, cfg: TrainConfig, objective: Objective,
          device: torch.device, seed: int, on_step: StepCallback | None = None,
          validate: Validator | None = None, progress: bool = True) -> TrainResult:
    """Train a student (and its EMA teacher for semi-supervised methods) for ``cfg.iterations``.

    ``on_step(step, values)`` receives the total loss, each term, ``w`` and ``lr`` after every
    iteration; ``validate(student)`` (every ``cfg.val_every`` iterations when given) returns a
    validation Dice, reported as ``val_dice``. With ``cfg.checkpoint == "best_val"`` the weights
    of the best validation Dice are returned, otherwise those of the last iteration.
    """
    seed_everything(seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    configure_backend(device)
    fmt = memory_format(device, cfg.channels_last)
    dtype = amp_dtype(device, cfg.amp)

    student = build_model(model_cfg, objective.needs_projection).to(device, memory_format=fmt)
    teacher = None
    if objective.needs_teacher:
        teacher = make_teacher(student, lambda: build_model(model_cfg, objective.needs_projection))
        teacher = teacher.to(device, memory_format=fmt)
        teacher.train()  # batch statistics and dropout, as in UA-MT
    student.train()
    optimizer = make_optimizer(student, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    loader = _loader(dataset, cfg, dataset.n_labeled, objective.needs_teacher, seed)
    n_labeled = cfg.labeled_bs

    best = (None, -1.0, None)  # step, dice, state
    bar = tqdm(loader, total=cfg.iterations, desc=f"train {objective.method}", unit="it", disable=not progress)
    for step, batch in enumerate(bar):
        lr = poly_lr(cfg.lr, step, cfg.iterations, cfg.lr_power)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=fmt)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast(device, dtype):
            total, terms = objective(student, teacher, images, labels, n_labeled, step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        if teacher is not None:
            update_ema(teacher, student, cfg.ema_decay, step)

        names = ["loss", *terms]
        values = torch.stack([total.detach().float(), *[t.float().to(total.device) for t in terms.values()]]).tolist()
        record = dict(zip(names, values))
        record["lr"] = lr
        if validate is not None and cfg.val_every and ((step + 1) % cfg.val_every == 0 or step + 1 == cfg.iterations):
            dice = validate(student)
            student.train()
            record["val_dice"] = dice
            if cfg.checkpoint == "best_val" and dice > best[1]:
                best = (step, dice, (copy.deepcopy(student.state_dict()),
                                     copy.deepcopy(teacher.state_dict()) if teacher is not None else None))
        if on_step is not None:
            on_step(step, record)
        if step % 10 == 0 or step + 1 == cfg.iterations:
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}")
    bar.close()

    if cfg.checkpoint == "best_val" and best[2] is not None:
        student.load_state_dict(best[2][0])
        if teacher is not None and best[2][1] is not None:
            teacher.load_state_dict(best[2][1])
        return TrainResult(student, teacher, best[0], best[1])
    return TrainResult(student, teacher, None, None)

