"""Stage `infer`: models/model.pt + test cases -> predictions/<case_id>.nii.gz in each case's
source grid (the original spacing and shape: resampling and cropping are undone)."""

import json
import time
from pathlib import Path

from tqdm import tqdm

from cvcl.cli import run_stage
from cvcl.errors import DataError
from cvcl.inference.predict import infer_config, predict_volume
from cvcl.io.atomic import atomic_path
from cvcl.io.volume import read_case, to_original_grid, write_nifti
from cvcl.params import load_params
from cvcl.tracking.run import open_run, stage_status
from cvcl.models.checkpoint import load_model
from cvcl.device import amp_dtype, configure_backend, memory_format, select_device

PROCESSED, SPLIT, MODEL = Path("data/processed"), Path("data/splits/split.json"), Path("models/model.pt")
RUN_FILE, RUN_OUT, PREDICTIONS = Path("models/mlflow_run.json"), Path("models/mlflow_run_infer.json"), Path("predictions")


def main() -> None:
    params = load_params()
    cfg = infer_config(params)
    if not SPLIT.is_file():
        raise DataError(SPLIT, "not found; run the split stage first")
    test = json.loads(SPLIT.read_text())["test"]
    device = select_device(cfg.device, "infer.device")
    configure_backend(device)
    fmt = memory_format(device, True)
    model, _ = load_model(MODEL, cfg.weights, device)
    model = model.to(memory_format=fmt)
    run = open_run(RUN_FILE, params.flat(["infer"]))
    with stage_status(run), atomic_path(PREDICTIONS, directory=True) as out:
        start = time.perf_counter()
        for case_id in tqdm(test, desc="infer", unit="case"):
            case = read_case(PROCESSED / f"{case_id}.h5")
            # a resampled case is predicted back onto its source grid (the published tables' units)
            label = predict_volume(model, case.image, cfg, device, amp_dtype(device, cfg.amp), fmt,
                                   output_shape=case.geometry.source_shape)
            full, affine = to_original_grid(label, case.geometry)
            write_nifti(out / f"{case_id}.nii.gz", full, affine)
        seconds = time.perf_counter() - start
        run.log_metrics({"infer_seconds_per_case": seconds / max(len(test), 1)})
        run.to_file(RUN_OUT)
    print(f"infer: {len(test)} cases in {seconds:.1f} s -> {PREDICTIONS}/")


if __name__ == "__main__":
    run_stage(main)
