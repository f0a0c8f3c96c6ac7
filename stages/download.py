"""Stage `download`: the dataset in its raw form -> data/raw/ (generated, downloaded or copied)."""

from cvcl import datasets, workspace
from cvcl.entrypoint import run_stage
from cvcl.params import load_params
from cvcl.sources import fetch
from cvcl.sources.config import source_settings


def main() -> None:
    params = load_params()
    dataset = datasets.get(params.get("dataset"))
    record = fetch(dataset, source_settings(params, dataset.settings), workspace.RAW)
    lists = record.get("lists") or f"none ({record.get('reason')})"
    print(f"download: {dataset.name} -> {workspace.RAW}/ (split lists: {lists})")


if __name__ == "__main__":
    run_stage(main)
