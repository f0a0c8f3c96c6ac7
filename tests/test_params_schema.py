"""params.schema.json and presets/preset.schema.json: what an editor with the YAML language server
checks params.yaml and the presets against (draft 7, the server's dialect). Validated here with
the jsonschema package: the shipped files pass, wrong files fail at the key that is wrong, and the
schema refuses exactly what the stages refuse (one source: the sections' declarations)."""

import copy
import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from cvcl.errors import ParamError
from cvcl.params import Params
from cvcl.params_schema import PARAMS_SCHEMA, PRESET_SCHEMA, params_schema, preset_schema
from cvcl.settings import SECTIONS, section_class
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _validator(rel):
    schema = json.loads((ROOT / rel).read_text())
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft7Validator
    cls.check_schema(schema)  # a valid draft-7 schema
    return cls(schema)


def _changed(changes):
    tree = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[key] = value
    return tree


def _stages_accept(tree):
    """Whether every section reads from ``tree`` (what the stages do), or the first refusal."""
    params = Params(tree)
    try:
        for prefix, _ in SECTIONS:
            params.config(section_class(prefix), prefix)
    except ParamError as exc:
        return str(exc)
    return True


def test_the_committed_schemas_are_the_generated_ones():
    assert json.loads((ROOT / PARAMS_SCHEMA).read_text()) == params_schema()
    assert json.loads((ROOT / PRESET_SCHEMA).read_text()) == preset_schema()


def test_params_yaml_and_every_preset_are_valid_and_point_at_their_schema():
    assert list(_validator(PARAMS_SCHEMA).iter_errors(PARAMS)) == []
    presets = sorted((ROOT / "presets").glob("*.yaml"))
    assert len(presets) >= 3
    check = _validator(PRESET_SCHEMA)
    for preset in presets:
        text = preset.read_text()
        assert text.startswith("# yaml-language-server: $schema=preset.schema.json\n"), preset.name
        assert list(check.iter_errors(yaml.safe_load(text))) == [], preset.name


# (changes to params.yaml, the path of the key the schema flags)
WRONG = [
    ({"labeled": 0}, ["labeled"]),
    ({"labeled": "8"}, ["labeled"]),
    ({"method": "cvlc"}, ["method"]),
    ({"dataset": "mnist"}, ["dataset"]),
    ({"train.lr": 0}, ["train", "lr"]),
    ({"train.momentum": 1.5}, ["train", "momentum"]),
    ({"train.patch": [48, 48]}, ["train", "patch"]),
    ({"train.patch": [48, 8, 32]}, ["train", "patch", 1]),
    ({"train.amp": "yes"}, ["train", "amp"]),
    ({"train.precision": "fp16"}, ["train", "precision"]),
    ({"train.iteration": 5}, ["train"]),  # an unknown key
    ({"model.norm": "group"}, ["model", "norm"]),
    ({"preprocess.resample": [1.0, 1.0]}, ["preprocess", "resample"]),
    ({"preprocess.resample": 0}, ["preprocess", "resample"]),
    ({"preprocess.modalities": ["flair", "flair"]}, ["preprocess", "modalities"]),
    ({"preprocess.modalities": ["dwi"]}, ["preprocess", "modalities", 0]),
    ({"download.synthetic.shape": [40, 36]}, ["download", "synthetic", "shape"]),
    ({"loss.temperature": 0}, ["loss", "temperature"]),
    ({"evaluate.distance_unit": "cm"}, ["evaluate", "distance_unit"]),
]


@pytest.mark.parametrize("changes,path", WRONG, ids=[str(c) for c, _ in WRONG])
def test_a_wrong_value_is_flagged_by_the_schema_and_refused_by_the_stages(changes, path):
    tree = _changed(changes)
    errors = list(_validator(PARAMS_SCHEMA).iter_errors(tree))
    assert errors, changes
    assert any(list(e.absolute_path) == path for e in errors), [list(e.absolute_path) for e in errors]
    refused = _stages_accept(tree)
    assert refused is not True and ".".join(str(p) for p in path[:2] if isinstance(p, str)) in refused


@pytest.mark.parametrize(
    "changes",
    [
        {"preprocess.resample": 1.25},
        {"preprocess.resample": [0.625, 0.625, 1.25]},
        {"preprocess.modalities": ["flair", "t1", "t1ce", "t2"]},
        {"preprocess.crop.margin_through": None},
        {"train.iterations": 6000, "train.lr_schedule": "step", "model.norm": "batch"},
        {"download.mirror": "/data/la-release", "dataset": "la"},
    ],
)
def test_a_right_value_passes_both(changes):
    tree = _changed(changes)
    assert list(_validator(PARAMS_SCHEMA).iter_errors(tree)) == []
    assert _stages_accept(tree) is True


def test_a_wrong_preset_is_flagged():
    check = _validator(PRESET_SCHEMA)
    assert [e.validator for e in check.iter_errors({"train.iteratons": 5})] == ["additionalProperties"]
    assert [list(e.absolute_path) for e in check.iter_errors({"train.lr": -1})] == [["train.lr"]]


def test_the_command_prints_the_schemas_and_checks_the_files():
    def cvcl(*args):
        return subprocess.run([sys.executable, "-m", "cvcl.commands", *args], cwd=ROOT, capture_output=True, text=True)

    printed = cvcl("params", "schema")
    assert printed.returncode == 0 and json.loads(printed.stdout) == params_schema()
    assert json.loads(cvcl("params", "schema", "--preset").stdout) == preset_schema()
    checked = cvcl("params", "check")
    assert checked.returncode == 0 and "agree with the declarations" in checked.stdout
