"""Stage `preprocess`: data/raw/ -> data/processed/<case_id>.h5 + manifest.csv."""

from cvcl import datasets, workspace
from cvcl.entrypoint import run_stage
from cvcl.params import load_params
from cvcl.preprocessing import preprocess
from cvcl.preprocessing.config import preprocess_config


def main() -> None:
    params = load_params()
    dataset = datasets.get(params.get("dataset"))
    n = preprocess(dataset, workspace.RAW, workspace.PROCESSED, config=preprocess_config(params))
    print(f"preprocess: {n} cases -> {workspace.PROCESSED}/")


if __name__ == "__main__":
    run_stage(main)
