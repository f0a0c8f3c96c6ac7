"""Stage `train`: processed cases + split -> models/model.pt, models/train_log.csv (+ MLflow run)."""

from cvcl import workspace
from cvcl.entrypoint import run_stage
from cvcl.params import load_params
from cvcl.training.config import training_settings
from cvcl.training.experiment import run_training


def main() -> None:
    settings = training_settings(load_params())
    trained = run_training(settings, workspace.read_split())
    print(
        f"train: {trained.method}, {trained.iterations} iterations in {trained.seconds:.0f} s -> "
        f"{workspace.MODEL}; MLflow run {trained.run_id}"
    )


if __name__ == "__main__":
    run_stage(main)
