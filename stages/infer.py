"""Stage `infer`: models/model.pt + test cases -> predictions/<case_id>.nii.gz in each case's
source grid (the original spacing and shape: resampling and cropping are undone), and the
network as the run's MLflow model (``runs:/<run_id>/model``, usable by ``cvcl predict``).

A ``train.checkpoint: best_val`` run that chose an earlier step than its last also predicts
with its last iteration's weights, into ``predictions/last_iteration/``, so the evaluation
reports both; ``predictions/checkpoint.json`` says which steps the predictions come from."""

import time

from cvcl import workspace
from cvcl.entrypoint import run_stage
from cvcl.inference.config import infer_config
from cvcl.inference.predictor import Predictor
from cvcl.io.atomic import atomic_path, write_json
from cvcl.params import load_params
from cvcl.tracking.model import log_model
from cvcl.tracking.run import open_run, stage_status


def main() -> None:
    params = load_params()
    cfg = infer_config(params)
    test = workspace.read_split()["test"]
    predictor = Predictor.load(workspace.MODEL, cfg)
    run = open_run(workspace.TRAIN_RUN, params.flat(["infer"]))
    with stage_status(run), atomic_path(workspace.PREDICTIONS, directory=True) as out:
        start = time.perf_counter()
        predictor.write_predictions(test, workspace.PROCESSED, out)
        seconds = time.perf_counter() - start
        meta = predictor.meta
        info: dict = {"checkpoint": "best_val" if meta.get("best_step") is not None else "last"}
        info["chosen_step"] = meta.get("chosen_step", meta.get("best_step"))
        info["last_step"] = meta.get("last_step", info["chosen_step"])
        if "last_step" in meta:  # the checkpoint keeps the last iteration's weights too (save_checkpoint)
            last = Predictor.load(workspace.MODEL, cfg, iteration="last")
            folder = out / workspace.PREDICTIONS_LAST.name
            folder.mkdir()
            last.write_predictions(test, workspace.PROCESSED, folder)
        write_json(out / workspace.CHECKPOINT_INFO.name, info)
        run.log_metrics({"infer_seconds_per_case": seconds / max(len(test), 1)})
        log_model(run, predictor.model, predictor.model_metadata())
        run.to_file(workspace.INFER_RUN)
    print(f"infer: {len(test)} cases in {seconds:.1f} s -> {workspace.PREDICTIONS}/")


if __name__ == "__main__":
    run_stage(main)
