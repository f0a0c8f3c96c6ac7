"""dvc.yaml cannot go stale: every module a stage imports (inside cvcl/) is one of its deps.

A stage whose deps miss a module it runs is not rerun when that module changes, and DVC then
serves results of the old code. The closure is computed from the source (imports of
``stages/<name>.py``, followed through every ``cvcl`` module and the packages that contain it).
"""

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # submodules imported by name
    return {n for n in names if n.split(".")[0] == "cvcl"}


def import_closure(script: Path) -> set[Path]:
    """Files of every cvcl module ``script`` imports, directly or not (package __init__s too)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for name in _imported(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                file = _module_file(".".join(parts[:i]))
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
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
    # infer -> cvcl.inference.predict -> cvcl.losses.prototype (class_argmax)
    assert {"cvcl/inference/predict.py", "cvcl/losses/prototype.py", "cvcl/__init__.py"} <= closure
