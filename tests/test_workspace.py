"""The contracts between stages (cvcl/workspace.py) agree with dvc.yaml, and their readers
refuse bad files with one line naming the file."""

import json

import pytest
import yaml

from cvcl import workspace
from cvcl.errors import DataError
from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _declared(stage: str, kind: str) -> set[str]:
    entries = STAGES[stage].get(kind, []) or []
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


@pytest.mark.parametrize(
    "stage, writes",
    [
        ("download", [workspace.RAW]),
        ("preprocess", [workspace.PROCESSED]),
        ("split", [workspace.SPLIT]),
        ("train", [workspace.MODEL, workspace.TRAIN_RUN]),
        ("infer", [workspace.PREDICTIONS, workspace.INFER_RUN]),
        ("evaluate", [workspace.METRICS, workspace.PER_CASE, workspace.PER_CASE_LAST, workspace.OVERLAYS]),
    ],
)
def test_each_stage_declares_the_paths_it_writes(stage, writes):
    declared = _declared(stage, "outs") | _declared(stage, "metrics") | _declared(stage, "plots")
    assert {str(p) for p in writes} <= declared, f"{stage}: dvc.yaml declares {sorted(declared)}"


@pytest.mark.parametrize(
    "stage, reads",
    [
        ("preprocess", [workspace.RAW]),
        ("split", [workspace.PROCESSED]),
        ("train", [workspace.PROCESSED, workspace.SPLIT]),
        ("infer", [workspace.MODEL, workspace.TRAIN_RUN, workspace.PROCESSED, workspace.SPLIT]),
        ("evaluate", [workspace.PREDICTIONS, workspace.INFER_RUN, workspace.PROCESSED, workspace.SPLIT]),
    ],
)
def test_each_stage_depends_on_the_paths_it_reads(stage, reads):
    assert {str(p) for p in reads} <= _declared(stage, "deps")


def test_the_training_curves_are_the_declared_plots():
    assert {str(workspace.TRAIN_LOG), str(workspace.VAL_LOG)} <= _declared("train", "plots")


def test_a_missing_or_broken_split_names_the_file_and_the_stage_to_run(tmp_path):
    path = tmp_path / "split.json"
    with pytest.raises(DataError, match="split.json.*run the split stage first"):
        workspace.read_split(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        workspace.read_split(path)
    path.write_text(json.dumps({"labeled": ["a"], "unlabeled": [], "val": []}))
    with pytest.raises(DataError, match="no list 'test'"):
        workspace.read_split(path)
    path.write_text(json.dumps({"labeled": ["a"], "unlabeled": [], "val": [], "test": ["b"]}))
    assert workspace.read_split(path)["test"] == ["b"]


def test_one_list_reader_refuses_a_case_listed_twice(tmp_path):
    listing = tmp_path / "train.list"
    listing.write_text("a\n\nb\n")
    assert workspace.read_list(listing) == ["a", "b"]
    assert workspace.training_cases(tmp_path) == 2
    listing.write_text("a\nb\na\n")
    with pytest.raises(DataError, match="train.list.*lists case a twice"):
        workspace.read_list(listing)
    listing.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="not a text file"):
        workspace.read_list(listing)
    assert workspace.training_cases(tmp_path / "nowhere") is None
