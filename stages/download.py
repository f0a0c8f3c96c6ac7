"""Stage `download`: the dataset in its raw form -> data/raw/."""

from cvcl.cli import run_stage
from cvcl.params import load_params
from cvcl.sources import fetch

RAW = "data/raw"


def main() -> None:
    params = load_params()
    fetch(params.str("dataset"), params, RAW)


if __name__ == "__main__":
    run_stage(main)
