"""A stage started by an interpreter without the project's dependencies says so in one line."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _bare_python() -> str | None:
    """A python3 on the PATH, outside this virtual environment, that cannot import torch."""
    venv = Path(sys.prefix).resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("python3", path=folder)
        if not candidate or venv in Path(candidate).resolve().parents:
            continue
        probe = subprocess.run([candidate, "-c", "import torch"], capture_output=True)
        if probe.returncode != 0:
            return candidate
    return None


BARE = _bare_python()


@pytest.mark.skipif(BARE is None, reason="every python3 on the PATH has torch")
@pytest.mark.parametrize("stage", ["split", "train"])
def test_a_stage_run_by_a_bare_interpreter_names_it_and_the_fix(stage):
    proc = subprocess.run([BARE, "-m", f"stages.{stage}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "torch" in lines[0] and "source .venv/bin/activate" in lines[0]
    assert "Traceback" not in proc.stderr


def test_the_project_interpreter_passes_the_check():
    proc = subprocess.run(
        [sys.executable, "-c", "import stages; print('ok')"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
