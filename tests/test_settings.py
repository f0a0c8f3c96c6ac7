"""Every parameter is declared once (cvcl/settings.py): params.yaml agrees with it, the typed
configs take their defaults from it, and an unknown key is refused with the closest name."""

import dataclasses

import pytest
import yaml

from cvcl.errors import ParamError
from cvcl.inference.predictor import InferConfig
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.params import flatten, load_params
from cvcl.errors import closest
from cvcl.settings import SETTINGS, check_known
from cvcl.training.config import TrainConfig
from tests.conftest import ROOT
from tests.helpers import run, set_params, stage_workspace

PARAMS = flatten(yaml.safe_load((ROOT / "params.yaml").read_text()))


def test_params_yaml_holds_exactly_the_declared_keys_with_their_defaults():
    assert list(PARAMS) == list(SETTINGS)  # same keys, same order
    for name, value in PARAMS.items():
        assert value == SETTINGS[name].default, name


@pytest.mark.parametrize("config,section", [(TrainConfig, "train"), (LossConfig, "loss"), (ModelConfig, "model"),
                                            (InferConfig, "infer")])
def test_typed_configs_default_to_the_declared_values(config, section):
    for field in dataclasses.fields(config):
        name = "train.patch" if (config is InferConfig and field.name == "patch") else f"{section}.{field.name}"
        if name not in SETTINGS:
            continue  # in_channels, n_classes: not parameters
        expected = SETTINGS[name].default
        got = getattr(config(), field.name)
        assert (list(got) if isinstance(got, tuple) else got) == expected, name


def test_every_declared_choice_list_resolves():
    for name, setting in SETTINGS.items():
        if setting.kind in ("choice", "choices"):
            allowed = setting.allowed()
            assert allowed, name
            default = setting.default if setting.kind == "choice" else setting.default[0]
            assert default in allowed, name


@pytest.mark.parametrize("typo,suggestion", [("loss.vcl_wieght", "loss.vcl_weight"),
                                             ("train.iteration", "train.iterations"),
                                             ("labelled", "labeled")])
def test_an_unknown_key_is_refused_with_the_closest_name(typo, suggestion):
    assert closest(typo, SETTINGS) == suggestion
    with pytest.raises(ParamError, match=rf"{typo} = 1: expected a known parameter.*did you mean {suggestion}\?"):
        check_known({**PARAMS, typo: 1})


def test_load_params_refuses_a_misspelt_key(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  vcl_weight:", "  vcl_wieght:", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamError, match="loss.vcl_wieght.*did you mean loss.vcl_weight"):
        load_params(tmp_path / "params.yaml")


def test_a_stage_stops_on_a_key_added_with_plus(tmp_path):
    ws = stage_workspace(tmp_path / "ws")
    set_params(ws, {"loss": {"vcl_wieght": 1.0}})  # what `dvc exp run -S +loss.vcl_wieght=1` writes
    proc = run(["python", "-m", "stages.download"], ws, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert "loss.vcl_wieght" in lines[0] and "did you mean loss.vcl_weight?" in lines[0]
    assert not (ws / "data").exists()


def test_every_shipped_preset_names_known_parameters(tmp_path):
    from cvcl.errors import DataError
    from cvcl.commands.presets import PRESETS, load_preset

    for path in PRESETS.glob("*.yaml"):
        assert load_preset(path.stem)
    (tmp_path / "bad.yaml").write_text("train.iteratons: 5\n")
    with pytest.raises(DataError, match="did you mean train.iterations"):
        load_preset("bad", tmp_path)
