"""Every parameter is declared once, in its section's dataclass (cvcl/settings.py lists the
sections): params.yaml, its comments, the docs' params table and the train stage's tracked params
agree with the declarations, the typed configs default to them, and an unknown key is refused
with the closest name.

The rule for params.yaml's comments: every key carries one on its line, and it is the declared
help, or starts with it and goes on after a non-word character (``# voxels, X Y Z (paper: ...)``);
lines holding only a comment below a key continue it freely.
"""

import dataclasses
import re
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
    PathText,
    Spacing,
    check_known,
    declared,
    params_keys,
    prefix_of,
    section_class,
    setting,
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


def test_a_kind_is_read_from_the_annotation():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        seed: int = setting(0, "draws", min=0)

    @dataclasses.dataclass(frozen=True)
    class Toy:
        given: int = 1  # not a parameter: the stage supplies it
        rate: float = setting(0.5, "a rate", min=0.0, max=1.0)
        on: bool = setting(False, "a switch")
        name: str = setting("a", "a name", choices=("a", "b"))
        free: str = setting("x", "any text", execution=True)
        sizes: tuple[int, int, int] = setting((1, 2, 3), "voxels", min=1)
        some: tuple[float, ...] = setting((0.5,), "numbers")
        picks: tuple[str, ...] = setting(("a",), "choices", choices=("a", "b"))
        where: PathText | None = setting(None, "a folder")
        spacing: Spacing | None = setting(None, "mm")
        margin: tuple[int, int] | None = setting((1, 2), "voxels")
        inner: Inner = dataclasses.field(default_factory=Inner)

    table = declared(Toy, "toy")
    assert list(table) == [
        "toy.rate",
        "toy.on",
        "toy.name",
        "toy.free",
        "toy.sizes",
        "toy.some",
        "toy.picks",
        "toy.where",
        "toy.spacing",
        "toy.margin",
        "toy.inner.seed",
    ]
    kinds = {name.removeprefix("toy."): (s.kind, s.length, s.optional) for name, s in table.items()}
    assert kinds == {
        "rate": ("float", None, False),
        "on": ("bool", None, False),
        "name": ("choice", None, False),
        "free": ("str", None, False),
        "sizes": ("ints", 3, False),
        "some": ("floats", None, False),
        "picks": ("choices", None, False),
        "where": ("path", None, True),
        "spacing": ("spacing", None, True),
        "margin": ("ints", 2, True),
        "inner.seed": ("int", None, False),
    }
    assert table["toy.sizes"].default == [1, 2, 3] and table["toy.free"].execution
    assert (table["toy.rate"].min, table["toy.rate"].max, table["toy.rate"].help) == (0.0, 1.0, "a rate")


def test_a_list_of_strings_without_choices_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Bad:
        names: tuple[str, ...] = setting(("a",), "names")

    with pytest.raises(TypeError, match="Bad.names: a list of strings needs its choices"):
        declared(Bad)


def test_the_top_level_keys_are_read_as_a_section():
    cfg = Params({"dataset": "la", "labeled": 8}).config(ExperimentConfig, "")
    assert cfg == ExperimentConfig(dataset="la", labeled=8)
    with pytest.raises(ParamError, match="labeled = 0: expected an integer >= 1"):
        Params({"labeled": 0}).config(ExperimentConfig, "")


def _commented_keys(text: str) -> dict[str, str]:
    """Each key of a block-style YAML file (dotted names) -> the comment on its line ('' if none)."""
    found, path = {}, []
    for line in text.splitlines():
        match = re.match(r"^( *)([A-Za-z_]\w*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)) // 2, match.group(2), match.group(3)
        value, _, comment = rest.partition("#")
        path = [*path[:indent], key]
        if value.strip():
            found[".".join(path)] = comment.strip()
    return found


def test_every_key_of_params_yaml_is_commented_with_its_declared_help():
    comments = _commented_keys((ROOT / "params.yaml").read_text())
    assert list(comments) == list(SETTINGS)
    wrong = [
        f"{name}: {comments[name]!r} does not start with {s.help!r}"
        for name, s in SETTINGS.items()
        if not (
            comments[name] == s.help
            or (comments[name].startswith(s.help) and not comments[name][len(s.help)].isalnum())
        )
    ]
    assert not wrong, "\n".join(wrong)


def _spellings(value: object) -> set[str]:
    """How the docs may show a default: as params.yaml does, lists also as 48x48x32 or 16/16/8,
    booleans also as on/off."""
    if isinstance(value, bool):
        return {"true", "on"} if value else {"false", "off"}
    if isinstance(value, list):
        return {sep.join(map(str, value)) for sep in ("x", "/")}
    return {str(value)}


def _docs_table() -> list[tuple[list[str], list[str]]]:
    """(names, defaults) per row of docs/experiments.md's "The params users change most"."""
    text = (ROOT / "docs" / "experiments.md").read_text()
    table = text.split("### The params users change most", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in table.splitlines()[2:]:
        names_cell, defaults_cell = line.split("|")[1:3]
        names = re.findall(r"`([^`]+)`", names_cell)
        rows.append((names, [d.strip().strip("`") for d in defaults_cell.split(",")]))
    return rows


def test_the_docs_params_table_shows_declared_keys_with_their_defaults():
    rows = _docs_table()
    assert len(rows) >= 10
    for names, defaults in rows:
        assert len(names) == len(defaults), names
        for name, shown in zip(names, defaults, strict=True):
            assert name in SETTINGS, f"docs/experiments.md names {name}, which is not declared"
            value = SETTINGS[name].default
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert float(shown) == value, f"docs/experiments.md: {name} = {shown}, declared {value}"
            else:
                assert shown in _spellings(value), f"docs/experiments.md: {name} = {shown}, declared {value}"


def test_the_train_stage_tracks_the_keys_dvc_yaml_declares_for_it():
    from cvcl.training.config import TRACKED, TRAIN_SECTIONS

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    assert TRACKED == stage["params"] == params_keys(TRAIN_SECTIONS)
    # every key it tracks is declared by one of the sections it reads
    covered = {name for cls in TRAIN_SECTIONS for name in declared(cls, prefix_of(cls))}
    assert {name for name in SETTINGS if name.split(".")[0] in TRACKED} == covered


def test_every_declared_choice_list_resolves():
    for name, s in SETTINGS.items():
        if s.kind in ("choice", "choices"):
            allowed = s.allowed()
            assert allowed, name
            default = s.default if s.kind == "choice" else s.default[0]
            assert default in allowed, name


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
