"""dvc.yaml cannot go stale: every module a stage imports (inside cvcl/) is one of its deps.

A stage whose deps miss a module it runs is not rerun when that module changes, and DVC then
serves results of the old code. The closure is computed from the source (imports of
``stages/<name>.py``, followed through every ``cvcl`` module and the packages that contain it).
"""

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SETTINGS_FILE = ROOT / "cvcl" / "settings.py"
_MODULE_NAME = re.compile(r"^cvcl(\.[a-z_0-9]+)+(:[A-Za-z_]+)?$")


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _runtime_nodes(tree: ast.AST, on_import: bool = False):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (never run); with
    ``on_import`` only those that run when the module is imported (not function bodies)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child, on_import)
            continue
        if on_import and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        yield from _runtime_nodes(node, on_import)


def _imported(path: Path, on_import: bool = False) -> set[str]:
    """cvcl modules ``path`` imports: import statements anywhere (a function's import runs when
    it is called), and modules named in strings, as the registries import them
    (``converter("cvcl.datasets.nifti.convert")``)."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text()), on_import):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # submodules imported by name
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _MODULE_NAME.match(node.value)
            and not on_import
            and path != SETTINGS_FILE
        ):  # choices: see the last test
            names.add(node.value.split(":")[0])
    return {n for n in names if n.split(".")[0] == "cvcl"}


def _members(package: Path) -> list[Path]:
    """The modules of ``package`` (a folder) and the ``__init__`` of its sub-packages: whatever a
    registry there may import as its members (methods are modules, datasets folders)."""
    return sorted([*package.glob("*.py"), *package.glob("*/__init__.py")])


def _with_discovered(file: Path | None) -> list[Path]:
    """``file``, and when it is a registry (a package ``__init__`` that finds its modules with
    ``cvcl.registry.discover_members``, as cvcl.datasets and cvcl.methods do), every member of its package."""
    if file is None:
        return []
    if file.name == "__init__.py" and "discover_members(" in file.read_text():
        return [file, *(p for p in _members(file.parent) if p != file)]
    return [file]


def import_closure(script: Path, on_import: bool = False) -> set[Path]:
    """Files of every cvcl module ``script`` imports, directly or not (package __init__s too);
    with ``on_import`` only the imports that run when the modules are imported."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for name in _imported(path, on_import):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                file = _module_file(".".join(parts[:i]))
                for found in _with_discovered(file):
                    if found not in seen:
                        seen.add(found)
                        todo.append(found)
    return seen


def _covered(file: Path, deps: list[str]) -> bool:
    rel = file.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_its_import_closure(stage):
    spec = STAGES[stage]
    module = spec["cmd"].split("-m", 1)[1].split()[0]
    script = _module_file(module)
    assert script is not None and _covered(script, spec["deps"]), f"{stage}: its script is not a dep"
    missing = sorted(str(f.relative_to(ROOT)) for f in import_closure(script) if not _covered(f, spec["deps"]))
    assert not missing, f"dvc.yaml stage {stage!r} runs these modules without depending on them: {missing}"


def test_the_closure_follows_imports_through_packages(tmp_path):
    closure = {str(p.relative_to(ROOT)) for p in import_closure(ROOT / "stages" / "infer.py")}
    # infer -> cvcl.inference.predictor -> cvcl.models.labels (class_argmax)
    assert {"cvcl/inference/predictor.py", "cvcl/models/labels.py", "cvcl/__init__.py"} <= closure


def _reads(stage: str, name: str) -> bool:
    """Whether ``stage`` declares the param ``name`` (itself or a section holding it)."""
    declared = [next(iter(p)) if isinstance(p, dict) else p for p in STAGES[stage].get("params", [])]
    return any(name == d or name.startswith(d + ".") for d in declared)


def test_the_registries_a_stage_validates_params_with_are_its_deps():
    """A choice setting names the module listing its valid values ("cvcl.methods:names"): a
    stage reading that setting imports it, and a registry imports every module of its package,
    so each stage declaring the param depends on all of them (their imports at import time)."""
    from cvcl.settings import SETTINGS, Registry

    checked = 0
    for name, setting in SETTINGS.items():
        registry = next((m.target for m in setting.info.metadata if isinstance(m, Registry)), None)
        if registry is None:
            continue
        module = _module_file(registry.split(":")[0])
        assert module is not None, f"{name}: choices name a module that does not exist"
        for stage, spec in STAGES.items():
            if _reads(stage, name):
                listed = _members(module.parent) if module.name == "__init__.py" else [module]
                closure = set(listed).union(*(import_closure(f, on_import=True) for f in listed))
                missing = sorted(str(f.relative_to(ROOT)) for f in closure if not _covered(f, spec["deps"]))
                assert not missing, (
                    f"{stage} reads {name}, whose choices come from modules it does not depend on: {missing}"
                )
                checked += 1
    assert checked >= 4  # dataset (download, preprocess, train), method and more


def test_a_stage_depends_on_the_declaration_of_every_section_it_reads():
    """The settings name the sections' dataclasses as strings ("cvcl.training.config:TrainConfig"),
    which the closure above does not follow: a stage declaring a param (or a section holding one)
    depends on the module that declares its default, kind and range."""
    from cvcl.settings import SECTIONS, SETTINGS, declared, section_class

    checked = 0
    for prefix, target in SECTIONS:
        module = _module_file(target.split(":")[0])
        assert module is not None, f"{prefix or 'the top level'}: declared in a module that does not exist"
        names = declared(section_class(prefix), prefix)
        assert set(names) <= set(SETTINGS)
        for stage, spec in STAGES.items():
            if any(_reads(stage, name) for name in names):
                assert _covered(module, spec["deps"]), (
                    f"{stage} reads {prefix or 'top-level keys'}, declared in {module.relative_to(ROOT)}, "
                    "which is not one of its deps"
                )
                checked += 1
    assert checked >= 10
