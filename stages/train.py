"""Stage `train`: processed cases + split -> models/model.pt, models/train_log.csv (+ MLflow run)."""

import csv
import json
import time
from pathlib import Path

from cvcl.cli import run_stage
from cvcl.data.dataset import PatchDataset
from cvcl.errors import DataError, ParamError
from cvcl.io.atomic import atomic_path
from cvcl.params import load_params
from cvcl.tracking.naming import data_version, run_name
from cvcl.tracking.run import last_logged_step, resume_run, start_run, stage_status
from cvcl.tracking.store import project_root
from cvcl.training.resume import stage_store
from cvcl.models.checkpoint import save_checkpoint
from cvcl.models.config import model_config
from cvcl.training.config import loss_config, method as read_method, train_config
from cvcl.device import select_device
from cvcl.training.objective import SEMI_SUPERVISED, Objective
from cvcl.training.trainer import train
from cvcl.training.validation import make_validator

PROCESSED, SPLIT = Path("data/processed"), Path("data/splits/split.json")
MODEL, LOG, VAL_LOG, RUN_FILE = (Path("models/model.pt"), Path("models/train_log.csv"),
                                 Path("models/val_log.csv"), Path("models/mlflow_run.json"))
TRACKED = ["dataset", "labeled", "seed", "method", "model", "train", "loss"]
# where and how fast training runs, not what it computes: no reason to start afresh
EXECUTION = {"train.threads", "train.workers", "train.device", "train.checkpoint_every"}
COLUMNS = ["step", "loss", "loss_sup", "loss_mt", "loss_uamt", "loss_pcl_l2u", "loss_pcl_u2l",
           "loss_vcl_l", "loss_vcl_u", "consistency_weight", "lr", "grad_norm", "amp_scale"]


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    params = load_params()
    method = read_method(params)
    dataset_name = params.get("dataset")
    seed = params.get("seed")
    cfg = train_config(params)
    losses = loss_config(params)
    if not SPLIT.is_file():
        raise DataError(SPLIT, "not found; run the split stage first")
    split = json.loads(SPLIT.read_text())
    semi = method in SEMI_SUPERVISED
    if semi and not split["unlabeled"]:
        raise ParamError("labeled", len(split["labeled"]),
                         f"fewer than the {len(split['labeled'])} training cases: method {method} needs unlabeled cases")
    if cfg.val_every and not split["val"]:
        raise ParamError("train.val_every", cfg.val_every, "0 when the split has no validation cases (set split.val)")
    device = select_device(cfg.device)

    dataset = PatchDataset(PROCESSED, split["labeled"], split["unlabeled"] if semi else [], cfg.patch)
    largest = [max(s[a] for s in dataset.shapes()) for a in range(3)]
    if any(p > m for p, m in zip(cfg.patch, largest)):
        raise ParamError("train.patch", list(cfg.patch),
                         f"a patch no larger than the largest volume, {'x'.join(map(str, largest))} voxels")
    model_cfg = model_config(params, dataset.in_channels)
    if model_cfg.norm == "instance" and max(cfg.patch) < 32:
        raise ParamError("train.patch", list(cfg.patch),
                         "a size of 32 or more along one axis with model.norm=instance "
                         "(the 1/16 bottleneck needs more than one voxel to normalise)")
    objective = Objective(method, losses, cfg.iterations, split_bn=cfg.split_bn)
    validate = make_validator(PROCESSED, split["val"], params, device) if cfg.val_every else None

    name = run_name(method, len(split["labeled"]), seed, losses.pcl_weight, losses.vcl_weight)
    tags = {"dataset": dataset_name, "method": method, "split_protocol": split["protocol"]}
    version = data_version()
    if version:
        tags["data_version"] = version
    store = stage_store(project_root(), {k: v for k, v in params.flat(TRACKED).items() if k not in EXECUTION},
                        SPLIT, PROCESSED, cfg.checkpoint_every)
    state = store.load()
    if state is not None:
        extra = state["extra"]
        run = resume_run(extra["run_id"], f"cvcl-{dataset_name}", name)
        rows, val_rows, logged = extra["rows"], extra["val_rows"], last_logged_step(run)
        print(f"train: resuming from iteration {state['step']} of {cfg.iterations} ({store.path})")
    else:
        if store.others():
            print(f"train: starting from iteration 0: no checkpoint for these params, data and code "
                  f"({len(store.others())} of other inputs kept in {store.folder.parent})")
        run = start_run(dataset_name, name, params.flat(TRACKED), tags)
        rows, val_rows, logged = [], [], -1

    def on_step(step: int, record: dict) -> None:
        row = {"step": step, **{k: v for k, v in record.items() if k != "val_dice"}}
        rows.append(row)
        if step > logged:  # a resumed run recomputes steps the store may already hold
            run.log_metrics({k: v for k, v in row.items() if k != "step"}, step)
        if "val_dice" in record:
            val_rows.append({"step": step, "val_dice": record["val_dice"]})
            if step > logged:
                run.log_metrics({"val_dice": record["val_dice"]}, step)

    def extra_state() -> dict:
        run.flush()  # the store then holds every step up to the checkpoint
        return {"run_id": run.run_id, "rows": list(rows), "val_rows": list(val_rows)}

    with stage_status(run):
        start = time.perf_counter()
        result = train(dataset, model_cfg, cfg, objective, device, seed, on_step=on_step, validate=validate,
                       checkpoints=store, resume=state, extra_state=extra_state)
        seconds = time.perf_counter() - start
        trained = cfg.iterations - result.resumed_from
        run.log_metrics({"train_seconds": seconds, "seconds_per_iteration": seconds / max(trained, 1)})
        meta = {"method": method, "iterations": cfg.iterations, "seed": seed, "dataset": dataset_name,
                "labeled": split["labeled"], "best_step": result.best_step, "best_val_dice": result.best_val,
                "patch": list(cfg.patch)}
        save_checkpoint(MODEL, result.student, result.teacher, model_cfg, meta)
        columns = [c for c in COLUMNS if c == "step" or c in rows[0]]
        _write_csv(LOG, columns, rows)
        _write_csv(VAL_LOG, ["step", "val_dice"], val_rows)
        run.log_artifact(LOG)
        run.log_artifact(MODEL)
        run.to_file(RUN_FILE)
    store.clear()
    print(f"train: {method}, {cfg.iterations} iterations in {seconds:.0f} s -> {MODEL}; MLflow run {run.run_id}")


if __name__ == "__main__":
    run_stage(main)
