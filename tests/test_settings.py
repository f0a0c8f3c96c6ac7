"""Every parameter is declared once, in its section's pydantic dataclass (cvcl/settings.py lists
the sections): params.yaml, its comments, the schema files, the docs' params table and the train
stage's tracked params agree with the declarations (cvcl/params_schema.py: drift), the typed
configs default to them, a refused value is one line saying what is allowed, and an unknown key
is refused with the closest name.
"""

import dataclasses
import shutil
import subprocess
import sys

import pytest
import yaml

from cvcl.errors import ParamError, closest
from cvcl.inference.config import InferConfig
from cvcl.params import Params, flatten, load_params
from cvcl.settings import (
    SECTIONS,
    SETTINGS,
    ExperimentConfig,
    check_known,
    declared,
    params_keys,
    prefix_of,
    section_class,
)
from tests.conftest import ROOT
from tests.helpers import run, set_params, stage_workspace

PARAMS = flatten(yaml.safe_load((ROOT / "params.yaml").read_text()))


def test_params_yaml_holds_exactly_the_declared_keys_with_their_defaults():
    assert list(PARAMS) == list(SETTINGS)  # same keys, same order
    for name, value in PARAMS.items():
        assert value == SETTINGS[name].default, name


@pytest.mark.parametrize("prefix", [prefix for prefix, _ in SECTIONS])
def test_each_section_defaults_to_its_declared_values(prefix):
    cls = section_class(prefix)
    made = dataclasses.asdict(cls())
    for name, setting_ in declared(cls, prefix).items():
        value = made
        for part in name.removeprefix(prefix).strip(".").split("."):
            value = value[part]
        assert (list(value) if isinstance(value, tuple) else value) == setting_.default, name
    assert prefix_of(cls) == prefix


def test_the_table_is_every_section_once_and_imports_nothing_heavy():
    assert len(set(SETTINGS)) == len(list(SETTINGS)) == len(SETTINGS)
    code = (
        "import sys, cvcl.settings as s; list(s.SETTINGS); "
        "print(' '.join(m for m in ('torch', 'h5py', 'nibabel', 'nilearn', 'scipy') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == []


def test_the_infer_patch_is_the_declared_training_patch():
    assert list(InferConfig().patch) == SETTINGS["train.patch"].default
    assert "infer.patch" not in SETTINGS  # given by the stage, not a key of infer


def _toy():
    """A section declared as the real ones are: bounds, a Literal, a registry, a list, nesting."""
    from typing import Annotated, Literal

    from pydantic import Field
    from pydantic.dataclasses import dataclass

    from cvcl.settings import EXECUTION_ONLY, SECTION, Registry

    Side = Annotated[int, Field(ge=16)]

    @dataclass(frozen=True, config=SECTION)
    class Inner:
        seed: int = Field(default=0, ge=0, description="draws")

    @dataclass(frozen=True, config=SECTION)
    class Toy:
        given: int = 1  # not a parameter: the stage supplies it
        rate: float = Field(default=0.5, ge=0.0, le=1.0, description="a rate")
        scale: float = Field(default=20.0, gt=0.0, description="a scale")
        on: bool = Field(default=False, description="a switch")
        name: Literal["a", "b"] = Field(default="a", description="a name")
        method: Annotated[str, Registry("cvcl.methods:names")] = Field(default="cvcl", description="a registry's name")
        free: Annotated[str, Field(min_length=1)] = Field(
            default="x", description="any text", json_schema_extra=EXECUTION_ONLY
        )
        sizes: tuple[Side, Side, Side] = Field(default=(16, 32, 48), description="voxels")
        inner: Inner = dataclasses.field(default_factory=Inner)

    return Toy


def test_a_section_is_a_pydantic_dataclass_read_with_its_declarations():
    toy = _toy()
    table = declared(toy, "toy")
    assert list(table) == [
        "toy.rate", "toy.scale", "toy.on", "toy.name", "toy.method", "toy.free", "toy.sizes", "toy.inner.seed"
    ]  # fmt: skip
    assert table["toy.sizes"].default == [16, 32, 48] and table["toy.free"].execution
    assert not table["toy.rate"].execution and table["toy.rate"].help == "a rate"
    assert table["toy.name"].allowed() == ("a", "b") and "cvcl" in table["toy.method"].allowed()
    made = Params({"toy": {"rate": 1, "sizes": [16, 16, 16.0], "inner": {"seed": 3}}}).config(toy, "toy")
    assert (made.rate, made.sizes, made.inner.seed, made.given) == (1.0, (16, 16, 16), 3, 1)


@pytest.mark.parametrize(
    "value,expected",
    [
        ({"rate": 1.5}, "toy.rate = 1.5: expected a number in [0.0, 1.0]"),
        ({"rate": float("nan")}, "toy.rate = nan: expected a number in [0.0, 1.0]"),
        ({"scale": 0}, "toy.scale = 0: expected a number > 0.0"),
        ({"on": 1}, "toy.on = 1: expected true or false"),
        ({"name": "c"}, "toy.name = 'c': expected one of a, b"),
        (
            {"method": "cvlc"},
            "toy.method = 'cvlc': expected one of supervised, mean_teacher, ua_mt, cvcl; did you mean cvcl?",
        ),
        ({"free": ""}, "toy.free = '': expected a non-empty string"),
        ({"sizes": [16, 8, 16]}, "toy.sizes = [16, 8, 16]: expected a list of 3 integers >= 16"),
        ({"sizes": [16, 16]}, "toy.sizes = [16, 16]: expected a list of 3 integers >= 16"),
        ({"inner": {"seed": "1"}}, "toy.inner.seed = '1': expected an integer >= 0"),
        ({"rat": 1}, "toy.rat = 1: expected a known parameter: params.yaml has no such key"),
    ],
)
def test_a_refused_value_is_one_line_naming_key_value_and_what_the_declaration_allows(value, expected):
    with pytest.raises(ParamError) as info:
        Params({"toy": value}).config(_toy(), "toy")
    assert str(info.value).startswith(f"params.yaml: {expected}")


def test_the_top_level_keys_are_read_as_a_section():
    cfg = Params({"dataset": "la", "labeled": 8}).config(ExperimentConfig, "")
    assert cfg == ExperimentConfig(dataset="la", labeled=8)
    with pytest.raises(ParamError, match="labeled = 0: expected an integer >= 1"):
        Params({"labeled": 0}).config(ExperimentConfig, "")


def test_params_yaml_its_comments_the_schema_files_and_the_docs_table_agree_with_the_declarations():
    from cvcl.params_schema import docs_table, drift

    assert drift(ROOT) == []
    assert len(docs_table((ROOT / "docs" / "experiments.md").read_text())) >= 10


def test_the_drift_check_finds_each_kind_of_disagreement(tmp_path):
    from cvcl.params_schema import drift

    for rel in ("params.yaml", "params.schema.json", "presets", "docs/experiments.md"):
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
    assert drift(tmp_path) == []
    text = (tmp_path / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(
        text.replace("  vcl_weight: 1.0", "  vcl_weight: 2.0").replace("# mean-teacher softmax MSE", "# MT")
    )
    (tmp_path / "docs/experiments.md").write_text(
        (tmp_path / "docs/experiments.md").read_text().replace("| `labeled` | `4` |", "| `labeled` | `8` |")
    )
    (tmp_path / "params.schema.json").write_text("{}\n")
    found = drift(tmp_path)
    assert any(p.startswith("params.schema.json: not what the declarations give") for p in found)
    assert "params.yaml: loss.vcl_weight = 2.0, declared default 1.0" in found
    assert any(p.startswith("params.yaml: loss.mt_weight: comment 'MT (cvcl") for p in found)
    assert "docs/experiments.md: labeled = 8, declared 4" in found


def test_the_train_stage_tracks_the_keys_dvc_yaml_declares_for_it():
    from cvcl.training.config import TRACKED, TRAIN_SECTIONS

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    assert TRACKED == stage["params"] == params_keys(TRAIN_SECTIONS)
    # every key it tracks is declared by one of the sections it reads
    covered = {name for cls in TRAIN_SECTIONS for name in declared(cls, prefix_of(cls))}
    assert {name for name in SETTINGS if name.split(".")[0] in TRACKED} == covered


def test_every_declared_choice_list_resolves():
    from cvcl.models.vnet import NORMALIZATIONS

    assert SETTINGS["model.norm"].allowed() == NORMALIZATIONS  # the network's own list (it imports torch)
    chosen = [name for name, s in SETTINGS.items() if s.allowed()]
    assert {"dataset", "method", "model.norm", "train.precision", "preprocess.modalities"} <= set(chosen)
    for name in chosen:
        default = SETTINGS[name].default
        assert all(d in SETTINGS[name].allowed() for d in (default if isinstance(default, list) else [default])), name


@pytest.mark.parametrize(
    "typo,suggestion",
    [("loss.vcl_wieght", "loss.vcl_weight"), ("train.iteration", "train.iterations"), ("labelled", "labeled")],
)
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
    from cvcl.commands.presets import PRESETS, load_preset
    from cvcl.errors import DataError

    for path in PRESETS.glob("*.yaml"):
        assert load_preset(path.stem)
    (tmp_path / "bad.yaml").write_text("train.iteratons: 5\n")
    with pytest.raises(DataError, match="did you mean train.iterations"):
        load_preset("bad", tmp_path)
