"""Same params, same seed, same outputs: every method's curves, metrics and predictions at tiny
params equal the record in tests/data/pinned_outputs.json (see tests/pinned.py), so a refactor
cannot change what users get without a test failing (slow: about 2 minutes)."""

import json
import math

import pytest

from tests.pinned import METHODS, PINNED, produce

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    return produce(tmp_path_factory.mktemp("pinned"))


@pytest.fixture(scope="module")
def pinned():
    return json.loads(PINNED.read_text())


def close(a, b, rel=1e-5, abs_=1e-7) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
    return a == b


def test_the_processed_data_and_the_split_are_unchanged(record, pinned):
    assert record["manifest"] == pinned["manifest"]
    assert record["split"] == pinned["split"]


@pytest.mark.parametrize("method", METHODS)
def test_each_method_logs_the_same_curves(record, pinned, method):
    got, want = record["methods"][method], pinned["methods"][method]
    assert got["columns"] == want["columns"]
    assert len(got["train_log"]) == len(want["train_log"])
    for step, (row, ref) in enumerate(zip(got["train_log"], want["train_log"], strict=True)):
        different = {k: (row.get(k), ref[k]) for k in ref if not close(row.get(k), ref[k])}
        assert not different, f"{method}, step {step}: (now, pinned) {different}"


@pytest.mark.parametrize("method", METHODS)
def test_each_method_scores_and_predicts_the_same(record, pinned, method):
    got, want = record["methods"][method], pinned["methods"][method]
    different = {
        k: (got["metrics"].get(k), v)
        for k, v in want["metrics"].items()
        if not close(got["metrics"].get(k), v, rel=1e-4)
    }
    assert not different, f"{method}: (now, pinned) {different}"
    assert got["foreground_voxels"].keys() == want["foreground_voxels"].keys()
    for case, voxels in want["foreground_voxels"].items():  # a voxel on a 0.5 tie may flip across CPUs
        assert abs(got["foreground_voxels"][case] - voxels) <= max(2, voxels // 1000), (method, case)
