"""The training loop shared by every method."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cvcl.data.dataset import PatchDataset
from cvcl.data.sampler import TwoStreamBatchSampler
from cvcl.device import configure_backend
from cvcl.entrypoint import raise_if_terminating
from cvcl.models.config import ModelConfig
from cvcl.models.vnet import VNet
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.resume import CheckpointStore, rng_state, set_rng_state
from cvcl.training.step import DivergenceGuard, TrainStep

StepCallback = Callable[[int, dict[str, float]], None]
Validator = Callable[[VNet], float]
# called after every iteration with the number of iterations done so far; True ends training there
StopCondition = Callable[[int], bool]

# Per-iteration values stay on the device and are read back (one host sync) every this many
# iterations: the divergence guard and the logs see every step, at most this many late.
READBACK_EVERY = 20


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_loader(
    dataset: PatchDataset, cfg: TrainConfig, n_labeled_cases: int, semi: bool, seed: int, start: int = 0
) -> DataLoader:
    labeled = list(range(n_labeled_cases))
    unlabeled = list(range(n_labeled_cases, len(dataset))) if semi else []
    batch = cfg.batch_size if semi else cfg.labeled_bs
    sampler = TwoStreamBatchSampler(labeled, unlabeled, batch, cfg.labeled_bs, cfg.iterations, seed, start)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=cfg.workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.workers > 0,
    )


@dataclass
class TrainResult:
    """The trained networks (the best validation's weights with ``checkpoint: best_val``), that
    validation's step and Dice (None otherwise), the iteration a resumed run started from, and
    the iterations done in all: ``cfg.iterations`` unless a stop condition cut training short.

    ``last`` holds the last iteration's weights beside the chosen ones (``{"step", "student",
    "teacher"}``, state dicts copied as the best validation's are; the checkpoint moves them to
    the CPU) when ``best_val`` chose an earlier step; None when the returned networks are the
    last iteration's."""

    student: VNet
    teacher: VNet | None
    best_step: int | None
    best_val: float | None
    resumed_from: int
    reached: int
    last: dict | None = None


def read_back(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
    """Host copies of the buffered per-step values, in one transfer."""
    if not pending:
        return []
    names = [[k for k, v in values.items() if torch.is_tensor(v)] for _, values in pending]
    flat = torch.stack(
        [values[k].reshape(()) for (_, values), keys in zip(pending, names, strict=True) for k in keys]
    ).tolist()
    out, i = [], 0
    for (step, values), keys in zip(pending, names, strict=True):
        record = dict(zip(keys, flat[i : i + len(keys)], strict=True))
        record.update({k: v for k, v in values.items() if not torch.is_tensor(v)})
        out.append((step, record))
        i += len(keys)
    return out


def train(
    dataset: PatchDataset,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    objective: Objective,
    device: torch.device,
    seed: int,
    on_step: StepCallback | None = None,
    validate: Validator | None = None,
    progress: bool = True,
    checkpoints: CheckpointStore | None = None,
    resume: dict | None = None,
    extra_state: Callable[[], dict] | None = None,
    stop: StopCondition | None = None,
) -> TrainResult:
    """Train a student (and its EMA teacher for semi-supervised methods) for ``cfg.iterations``.

    ``on_step(step, values)`` receives the total loss, each term, ``w``, ``lr``, ``grad_norm``
    (and ``amp_scale`` under float16 AMP) of every iteration, in order, at most
    :data:`READBACK_EVERY` iterations late; ``validate(student)`` (every ``cfg.val_every``
    iterations when given) returns a validation Dice, reported as ``val_dice``. With
    ``cfg.checkpoint == "best_val"`` the weights of the best validation Dice are returned,
    otherwise those of the last iteration. Raises :class:`TrainingDiverged` on a non-finite
    loss term or gradient (:class:`DivergenceGuard`).

    With ``checkpoints`` the whole state is saved every ``checkpoints.every`` iterations, with
    ``extra_state()`` (the caller's records up to that iteration); ``resume`` (a state that
    :meth:`CheckpointStore.load` returned) continues from where it was saved
    (:mod:`cvcl.training.resume`).

    ``stop(done)`` is called after every iteration with the number done so far (a deadline, a
    benchmark's budget); when it returns True before ``cfg.iterations``, the buffered steps go
    to ``on_step`` and training ends there, without a validation or checkpoint for the cut
    (:attr:`TrainResult.reached` says where). The lr and ramp schedules stay those of
    ``cfg.iterations``.
    """
    seed_everything(seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    configure_backend(device, cfg.deterministic)
    trainer = TrainStep(objective, model_cfg, cfg, device)
    guard = DivergenceGuard(scaled=trainer.scaler.is_enabled())
    # the best validation so far: a plain dict, so a checkpoint of it loads with weights_only
    best: dict = {"step": None, "dice": -1.0, "student": None, "teacher": None}
    start = resume["step"] if resume is not None else 0
    loader = make_loader(dataset, cfg, dataset.n_labeled, objective.needs_teacher, seed, start)
    batches = iter(loader)  # draws the loader's base seed from the global generator
    if resume is not None:  # so restore the generators after it, as they were at the save
        trainer.load_state_dict(resume["trainer"])
        set_rng_state(resume["rng"])
        best = resume["best"]

    pending: list[tuple[int, dict]] = []
    bar = tqdm(
        batches, total=cfg.iterations, initial=start, desc=f"train {objective.method}", unit="it", disable=not progress
    )

    def flush() -> dict[str, float] | None:
        last = None
        for s, record in read_back(pending):
            guard.check(s, record)
            if on_step is not None:
                on_step(s, record)
            last = record
        pending.clear()
        return last

    def save(next_step: int) -> None:
        assert checkpoints is not None  # called only when saving (below)
        checkpoints.save(
            {
                "step": next_step,
                "trainer": trainer.state_dict(),
                "rng": rng_state(),
                "best": best,
                "extra": extra_state() if extra_state is not None else {},
            }
        )

    reached = start
    for step, batch in enumerate(bar, start=start):
        raise_if_terminating()
        pending.append((step, trainer(batch["image"], batch["label"], step)))
        reached = step + 1
        last_step = reached == cfg.iterations
        # asked every iteration, the last too, so that the condition always knows how far training got
        stopping = stop is not None and stop(reached) and not last_step
        validating = validate is not None and cfg.val_every and ((step + 1) % cfg.val_every == 0 or last_step)
        if validating:
            scored = (
                trainer.teacher if cfg.val_weights == "teacher" and trainer.teacher is not None else trainer.student
            )
            mode = scored.training
            assert validate is not None  # `validating` holds only when it is set
            dice = validate(scored)
            scored.train(mode)
            pending[-1][1]["val_dice"] = dice
            if cfg.checkpoint == "best_val" and dice > best["dice"]:
                teacher_state = trainer.teacher.state_dict() if trainer.teacher is not None else None
                best = {
                    "step": step,
                    "dice": dice,
                    "student": copy.deepcopy(trainer.student.state_dict()),
                    "teacher": copy.deepcopy(teacher_state),
                }
        saving = checkpoints is not None and checkpoints.every > 0 and (step + 1) % checkpoints.every == 0
        if len(pending) >= READBACK_EVERY or last_step or validating or saving or stopping:
            record = flush()
            if record is not None:
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        if saving and not last_step:
            save(step + 1)
        if stopping:
            break
    flush()
    bar.close()

    student, teacher = trainer.student, trainer.teacher
    if cfg.checkpoint == "best_val" and best["student"] is not None:
        last = None
        if best["step"] != reached - 1:  # the table reports both: keep the last weights before loading the best
            last = {
                "step": reached - 1,
                "student": copy.deepcopy(student.state_dict()),
                "teacher": copy.deepcopy(teacher.state_dict()) if teacher is not None else None,
            }
        student.load_state_dict(best["student"])
        if teacher is not None and best["teacher"] is not None:
            teacher.load_state_dict(best["teacher"])
        return TrainResult(student, teacher, best["step"], best["dice"], start, reached, last)
    return TrainResult(student, teacher, None, None, start, reached)
