"""Bad input stops a stage with one line naming the parameter or file, and writes nothing."""

import pytest

from tests.helpers import run, set_params, stage_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = stage_workspace(tmp_path_factory.mktemp("ws"))
    run(["python", "-m", "stages.download"], ws)
    run(["python", "-m", "stages.preprocess"], ws)
    return ws


def fails(ws, stage, expect, outputs):
    proc = run(["python", "-m", f"stages.{stage}"], ws, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for word in expect:
        assert word in lines[0]
    for out in outputs:
        assert not (ws / out).exists(), out
    return lines[0]


@pytest.fixture
def params(workspace):
    original = (workspace / "params.yaml").read_text()
    yield lambda changes: set_params(workspace, changes)
    (workspace / "params.yaml").write_text(original)


def test_unknown_dataset(workspace, params, tmp_path):
    params({"dataset": "mnist"})
    fails(workspace, "download", ["dataset", "'mnist'", "synthetic-la"], [])
    assert (workspace / "data" / "raw").exists()  # the previous good output is untouched


def test_bad_generator_shape(workspace, params):
    params({"download": {"synthetic": {"shape": [40, 36]}}})
    fails(workspace, "download", ["download.synthetic.shape", "list of 3 integers"], [])


def test_labeled_larger_than_the_training_cases(workspace, params):
    params({"labeled": 50})
    fails(workspace, "split", ["labeled = 50", "[1, 5]"], ["data/splits/split.json"])


def test_labeled_below_one(workspace, params):
    params({"labeled": 0})
    fails(workspace, "split", ["labeled = 0"], ["data/splits/split.json"])


@pytest.fixture
def split(workspace):
    run(["python", "-m", "stages.split"], workspace)


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"train": {"iterations": 0}}, ["train.iterations = 0", "integer >= 1"]),
        ({"train": {"iterations": "many"}}, ["train.iterations", "'many'"]),
        ({"method": "magic"}, ["method = 'magic'", "cvcl"]),
        ({"train": {"patch": [128, 128, 64]}}, ["train.patch", "largest volume"]),
        ({"train": {"patch": [30, 32, 16]}}, ["train.patch", "divisible by 16"]),
        ({"train": {"patch": [16, 16, 16]}, "model": {"norm": "instance"}}, ["train.patch", "model.norm=instance"]),
        ({"labeled": 5, "method": "mean_teacher"}, ["labeled", "unlabeled"]),
        ({"loss": {"temperature": 0}}, ["loss.temperature"]),
    ],
)
def test_bad_training_params(workspace, split, params, changes, words):
    params(changes)
    if "labeled" in changes:
        run(["python", "-m", "stages.split"], workspace)
    fails(workspace, "train", words, ["models/model.pt", "models/mlflow_run.json", "models/train_log.csv"])
