import pytest

from cvcl.errors import DataError, ParamError
from cvcl.params import Params, flatten, load_params


def make(**tree):
    return Params(tree)


def test_declared_values_are_read_converted():
    p = make(labeled=8, train={"lr": 0.01, "patch": [112, 112, 80], "amp": True, "iterations": 6000.0})
    assert p.get("labeled") == 8
    assert p.get("train.lr") == 0.01
    assert p.get("train.patch") == (112, 112, 80)
    assert p.get("train.amp") is True
    assert p.get("train.iterations") == 6000 and isinstance(p.get("train.iterations"), int)  # integral float
    assert p.get("train.momentum") == 0.9  # absent: the declared default
    assert p.get("preprocess.resample") is None and make(preprocess={"resample": 2}).get("preprocess.resample") == (
        2.0,
        2.0,
        2.0,
    )
    assert make(download={"mirror": "~/la"}).get("download.mirror").endswith("/la")  # ~ expanded
    assert make(download={"mirror": "https://h/x"}).get("download.mirror") == "https://h/x"


@pytest.mark.parametrize(
    "tree,name",
    [
        ({"labeled": -1}, "labeled"),
        ({"labeled": "8"}, "labeled"),
        ({"labeled": True}, "labeled"),
        ({"train": {"lr": 0}}, "train.lr"),
        ({"train": {"lr": float("nan")}}, "train.lr"),
        ({"train": {"patch": [1, 2]}}, "train.patch"),
        ({"train": {"amp": "yes"}}, "train.amp"),
        ({"method": "magic"}, "method"),
        ({"preprocess": {"crop": {"margin_inplane": [5, 5]}}}, "preprocess.crop.margin_inplane"),
        ({"preprocess": {"modalities": []}}, "preprocess.modalities"),
    ],
)
def test_bad_values_name_parameter_value_and_expectation(tree, name):
    with pytest.raises(ParamError) as info:
        make(**tree).get(name)
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
    assert isinstance(p.get("labeled"), int)
    assert p.get("method") in ("supervised", "mean_teacher", "ua_mt", "cvcl")
