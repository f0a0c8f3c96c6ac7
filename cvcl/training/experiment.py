"""One training as the ``train`` stage runs it: checks, resume, MLflow run, trainer, outputs.

:func:`run_training` takes the stage's settings and the split and writes the checkpoint, the training
curves (``models/train_log.csv``, ``models/val_log.csv``) and the MLflow run record
(``models/mlflow_run.json``) that the later stages log to. A run interrupted by a crash or a
kill resumes from its last checkpoint when rerun with the same inputs
(:mod:`cvcl.training.resume`); a failed run ends FAILED in MLflow with its curves.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cvcl import methods, workspace
from cvcl.data.dataset import PatchDataset
from cvcl.device import native_bf16, select_device
from cvcl.errors import ParamError
from cvcl.io.atomic import atomic_path
from cvcl.methods import LossConfig
from cvcl.models.checkpoint import save_checkpoint
from cvcl.models.config import ModelConfig
from cvcl.tracking.naming import data_version, run_name
from cvcl.tracking.run import (
    Run,
    experiment_name,
    last_logged_step,
    resume_run,
    stage_status,
    start_run,
)
from cvcl.tracking.store import project_root
from cvcl.training.config import TrainConfig, TrainingSettings
from cvcl.training.objective import Objective
from cvcl.training.resume import stage_store
from cvcl.training.trainer import train
from cvcl.training.validation import make_validator


@dataclass(frozen=True)
class Trained:
    """What a finished training reports: its method, length, time and MLflow run."""

    method: str
    iterations: int
    seconds: float
    run_id: str


def check_split(method: str, split: dict, cfg: TrainConfig) -> None:
    """Refuse a split the method cannot train on, naming the parameter to change."""
    if methods.get(method).semi_supervised and not split["unlabeled"]:
        raise ParamError(
            "labeled",
            len(split["labeled"]),
            f"fewer than the {len(split['labeled'])} training cases: method {method} needs unlabeled cases",
        )
    if cfg.val_every and not split["val"]:
        raise ParamError("train.val_every", cfg.val_every, "0 when the split has no validation cases (set split.val)")


def check_patch(cfg: TrainConfig, dataset: PatchDataset, model_cfg: ModelConfig) -> None:
    """Refuse a patch larger than every volume, or too small for instance norm's bottleneck."""
    largest = [max(s[a] for s in dataset.shapes()) for a in range(3)]
    if any(p > m for p, m in zip(cfg.patch, largest, strict=True)):
        raise ParamError(
            "train.patch",
            list(cfg.patch),
            f"a patch no larger than the largest volume, {'x'.join(map(str, largest))} voxels",
        )
    if model_cfg.norm == "instance" and max(cfg.patch) < 32:
        raise ParamError(
            "train.patch",
            list(cfg.patch),
            "a size of 32 or more along one axis with model.norm=instance "
            "(the 1/16 bottleneck needs more than one voxel to normalise)",
        )


def fixed_batch_statistics(model_cfg: ModelConfig, cfg: TrainConfig, n_labeled: int, semi: bool) -> bool:
    """True when batch norm would normalise the same labeled volumes together, and only them, at
    every step: all of them in each batch (``train.labeled_bs >= labeled``) with nothing else in
    the statistics (a supervised run, or ``train.split_bn``). Such a network learns its fixed batch
    and fails on scans normalised one at a time: on real LA, 48 validation Dice against 80 with
    pairs drawn anew (docs/results-la.md, "The joint tuning")."""
    return model_cfg.norm == "batch" and cfg.labeled_bs >= n_labeled and (not semi or cfg.split_bn)


@dataclass(frozen=True)
class Setup:
    """Everything :func:`cvcl.training.trainer.train` takes but the callbacks, built from the
    settings as the train stage builds them (``benchmarks/gpu_check.py`` trains through it too)."""

    method: str
    cfg: TrainConfig
    losses: LossConfig
    device: torch.device
    dataset: PatchDataset
    model_cfg: ModelConfig
    objective: Objective


def training_setup(settings: TrainingSettings, split: dict, processed: Path) -> Setup:
    """The device, the patch dataset of ``split``'s labeled (and, for a semi-supervised method,
    unlabeled) cases in ``processed``, the V-Net's shape (its input channels from the data) and
    the method's objective. ParamError naming the parameter when the split or the patch does not suit."""
    method, cfg, losses = settings.experiment.method, settings.train, settings.losses
    check_split(method, split, cfg)
    device = select_device(cfg.device)
    if cfg.precision == "bf16" and device.type == "cpu" and not native_bf16():
        print(
            "train: note: this CPU has no native bfloat16 (AVX512_BF16 or AMX): train.precision=bf16 is emulated here, "
            "slower than float32",
            flush=True,
        )
    semi = methods.get(method).semi_supervised
    dataset = PatchDataset(processed, split["labeled"], split["unlabeled"] if semi else [], cfg.patch)
    model_cfg = dataclasses.replace(settings.model, in_channels=dataset.in_channels)
    check_patch(cfg, dataset, model_cfg)
    n_labeled = len(split["labeled"])
    if fixed_batch_statistics(model_cfg, cfg, n_labeled, semi):
        print(
            f"train: note: every batch normalises all {n_labeled} labeled volumes together under batch "
            f"norm (train.labeled_bs = {cfg.labeled_bs}): the network can learn that fixed batch and fail on scans "
            "normalised alone (docs/results-la.md, 'The joint tuning'); a train.labeled_bs below labeled avoids it",
            flush=True,
        )
    objective = Objective(method, losses, cfg.iterations, split_bn=cfg.split_bn)
    return Setup(method, cfg, losses, device, dataset, model_cfg, objective)


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    """``rows`` as a CSV file with ``header`` (keys outside it ignored), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run_training(
    settings: TrainingSettings,
    split: dict,
    processed: Path = workspace.PROCESSED,
    split_file: Path = workspace.SPLIT,
) -> Trained:
    """Train the settings' method on ``split`` and write the train stage's outputs."""
    dataset_name, seed = settings.experiment.dataset, settings.experiment.seed
    setup = training_setup(settings, split, processed)
    method, cfg, losses, model_cfg = setup.method, setup.cfg, setup.losses, setup.model_cfg
    validate = make_validator(processed, split["val"], cfg.patch, setup.device) if cfg.val_every else None

    name = run_name(method, len(split["labeled"]), seed, losses.as_params())
    tags = {"dataset": dataset_name, "method": method, "split_protocol": split["protocol"]}
    version = data_version()
    if version:
        tags["data_version"] = version
    store = stage_store(project_root(), settings.identity, split_file, processed, cfg.checkpoint_every)
    state = store.load()
    if state is not None:
        extra = state["extra"]
        run = resume_run(extra["run_id"], experiment_name(dataset_name), name)
        rows, val_rows, logged = extra["rows"], extra["val_rows"], last_logged_step(run)
        print(f"train: resuming from iteration {state['step']} of {cfg.iterations} ({store.path})")
    else:
        if store.others():
            print(
                f"train: starting from iteration 0: no checkpoint for these params, data and code "
                f"({len(store.others())} of other inputs kept in {store.folder.parent})"
            )
        run = start_run(dataset_name, name, settings.tracked, tags, dataset_version=version)
        rows, val_rows, logged = [], [], -1

    def send(row: dict) -> None:
        """Log a train-log or validation row unless the store holds its step already (a resumed
        run recomputes steps the store may hold)."""
        if row["step"] > logged:
            run.log_metrics({k: v for k, v in row.items() if k != "step"}, row["step"])

    # points the store lacks up to the checkpoint (a server that went away before they were sent)
    for row in rows + val_rows:
        send(row)

    def on_step(step: int, record: dict) -> None:
        row = {"step": step, **{k: v for k, v in record.items() if k != "val_dice"}}
        rows.append(row)
        send(row)
        if "val_dice" in record:
            val_rows.append({"step": step, "val_dice": record["val_dice"]})
            send(val_rows[-1])

    def extra_state() -> dict:
        run.flush()  # the store then holds every step up to the checkpoint
        return {"run_id": run.run_id, "rows": list(rows), "val_rows": list(val_rows)}

    with stage_status(run):
        start = time.perf_counter()
        result = train(
            setup.dataset,
            model_cfg,
            cfg,
            setup.objective,
            setup.device,
            seed,
            on_step=on_step,
            validate=validate,
            checkpoints=store,
            resume=state,
            extra_state=extra_state,
        )
        seconds = time.perf_counter() - start
        trained = cfg.iterations - result.resumed_from
        run.log_metrics({"train_seconds": seconds, "seconds_per_iteration": seconds / max(trained, 1)})
        if result.best_step is not None and result.best_val is not None:  # the validation step kept
            run.log_metrics({"chosen_step": result.best_step, "best_val_dice": result.best_val})
        meta = {
            "method": method,
            "iterations": cfg.iterations,
            "seed": seed,
            "dataset": dataset_name,
            "labeled": split["labeled"],
            "best_step": result.best_step,
            "best_val_dice": result.best_val,
            # the step (0-based, as val_log.csv's) whose weights the checkpoint's networks hold
            "chosen_step": result.best_step if result.best_step is not None else result.reached - 1,
            "patch": list(cfg.patch),
            "preprocessing": workspace.read_recipe(processed),
        }
        _write_outputs(run, result, model_cfg, meta, rows, val_rows)
    store.clear()
    return Trained(method, cfg.iterations, seconds, run.run_id)


def _write_outputs(
    run: Run, result, model_cfg: ModelConfig, meta: dict, rows: list[dict], val_rows: list[dict]
) -> None:
    save_checkpoint(workspace.MODEL, result.student, result.teacher, model_cfg, meta, last=result.last)
    columns = [c for c in methods.log_columns() if c == "step" or c in rows[0]]
    write_csv(workspace.TRAIN_LOG, columns, rows)
    write_csv(workspace.VAL_LOG, ["step", "val_dice"], val_rows)
    run.log_artifact(workspace.TRAIN_LOG)
    run.log_artifact(workspace.MODEL)
    run.to_file(workspace.TRAIN_RUN)
