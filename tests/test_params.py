import pytest

from cvcl.errors import DataError, ParamError
from cvcl.params import Params, flatten, load_params


def make(**tree):
    return Params(tree)


def test_typed_getters_return_converted_values():
    p = make(labeled=8, train={"lr": 0.01, "patch": [112, 112, 80], "amp": True, "iterations": 6000.0})
    assert p.int("labeled", min=1) == 8
    assert p.float("train.lr", min=0, min_exclusive=True) == 0.01
    assert p.int_list("train.patch", length=3) == [112, 112, 80]
    assert p.bool("train.amp") is True
    assert p.int("train.iterations") == 6000  # an integral float is an integer


@pytest.mark.parametrize(
    "tree,call,name",
    [
        ({"labeled": -1}, lambda p: p.int("labeled", min=1), "labeled"),
        ({"labeled": "8"}, lambda p: p.int("labeled", min=1), "labeled"),
        ({"labeled": True}, lambda p: p.int("labeled", min=1), "labeled"),
        ({"train": {"lr": 0}}, lambda p: p.float("train.lr", min=0, min_exclusive=True), "train.lr"),
        ({"train": {"lr": float("nan")}}, lambda p: p.float("train.lr"), "train.lr"),
        ({"train": {"patch": [1, 2]}}, lambda p: p.int_list("train.patch", length=3), "train.patch"),
        ({"method": "magic"}, lambda p: p.choice("method", ["cvcl", "supervised"]), "method"),
        ({}, lambda p: p.int("labeled"), "labeled"),
    ],
)
def test_bad_values_name_parameter_value_and_expectation(tree, call, name):
    with pytest.raises(ParamError) as info:
        call(make(**tree))
    message = str(info.value)
    assert message.startswith(f"params.yaml: {name} = ")
    assert "expected" in message and "\n" not in message


def test_flatten_gives_dotted_names():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": [1, 2]}}}) == {"a": 1, "b.c": 2, "b.d.e": [1, 2]}
    p = make(labeled=4, train={"lr": 0.1}, infer={"stride": [1, 1, 1]})
    assert p.flat(["labeled", "train"]) == {"labeled": 4, "train.lr": 0.1}


def test_load_params_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_params(bad)


def test_repository_params_file_is_valid():
    from tests.conftest import ROOT

    p = load_params(ROOT / "params.yaml")
    assert isinstance(p.int("labeled"), int)
    assert p.choice("method", ["supervised", "mean_teacher", "ua_mt", "cvcl"])
