"""The ``cvcl`` command: every user command in one place, on the PATH (issue 22).

``cvcl --help`` lists them, each answers ``--help``, an unknown one is a one-line error naming the
closest, the old ``python -m cvcl.predict`` still works, and ``cvcl notebook`` runs the shipped
notebook on the project's kernel, headless or in JupyterLab.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cvcl import jupyter
from cvcl.commands import COMMANDS, module_name
from cvcl.commands import main as cvcl
from tests.conftest import ROOT

CVCL = str(Path(sys.executable).parent / "cvcl")  # the console script pip made in this environment
RECORDS = ROOT / "results" / "la-mini" / "table"


def run_cvcl(*args: str, timeout: int = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([CVCL, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def test_help_lists_every_command_with_its_line():
    proc = run_cvcl("--help")
    assert proc.returncode == 0, proc.stderr
    for name, summary in COMMANDS.items():
        assert f"  {name} " in proc.stdout and summary in proc.stdout, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_is_a_module_that_answers_help(name, capsys):
    assert callable(importlib.import_module(module_name(name)).main)
    with pytest.raises(SystemExit) as stopped:
        cvcl([name, "--help"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cvcl {name} ")


def test_each_command_module_stays_small():
    for name in COMMANDS:
        path = Path(importlib.util.find_spec(module_name(name)).origin)
        assert len(path.read_text().splitlines()) <= 400, path


def test_an_unknown_command_is_one_line_naming_the_closest():
    proc = run_cvcl("sweepray", "--address", "x")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: no command 'sweepray'; the closest is 'sweep-ray' (cvcl --help lists them)"
    ]
    proc = run_cvcl()
    assert proc.returncode == 2 and "usage: cvcl <command>" in proc.stderr


def test_a_user_error_in_a_command_is_one_line_with_status_2(tmp_path, capsys):
    assert cvcl(["report", str(tmp_path / "metrics.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'metrics.json'}: not found; dvc repro writes it (the evaluate stage)"
    ]
    assert cvcl(["presets", "no-such-preset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such preset (known: " in err[0]


def test_report_prints_the_metrics_table(tmp_path, capsys):
    summary = {
        "dice": 0.9,
        "dice_std": 0.01,
        "jaccard": 0.82,
        "jaccard_std": 0.02,
        "hd95": 3.0,
        "hd95_std": 1.0,
        "asd": 1.0,
        "asd_std": 0.5,
        "assd": 1.0,
        "assd_std": 0.5,
        "distance_unit": "voxel",
        "n_cases": 2,
        "n_empty_prediction": 0,
        "n_empty_reference": 0,
    }
    (tmp_path / "metrics.json").write_text(json.dumps(summary))
    assert cvcl(["report", str(tmp_path / "metrics.json")]) == 0
    out = capsys.readouterr().out
    assert "Dice (%)" in out and "90.00" in out and "2 test cases" in out


def test_the_old_python_m_spellings_still_reach_the_commands():
    alias = subprocess.run(
        [sys.executable, "-m", "cvcl.predict", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert alias.returncode == 0 and alias.stdout.startswith("usage: cvcl predict "), alias.stderr
    package = subprocess.run(
        [sys.executable, "-m", "cvcl.commands", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert package.returncode == 0 and "sweep-ray" in package.stdout


# -- cvcl notebook ---------------------------------------------------------------------------


def test_the_kernel_is_this_environments_python_kept_in_the_environment():
    folder = jupyter.ensure_kernel()
    assert folder == jupyter.kernel_dir() and Path(sys.prefix) in folder.parents  # not the user's home
    spec = json.loads((folder / "kernel.json").read_text())
    assert Path(spec["argv"][0]).parent == Path(sys.executable).parent
    assert (
        json.loads((ROOT / "notebooks" / "ablations.ipynb").read_text())["metadata"]["kernelspec"]["name"]
        == jupyter.KERNEL_NAME
    )


def test_execute_runs_the_shipped_notebook_on_an_imported_store(tmp_path, mlflow_store, monkeypatch):
    """The notebook on a small store made from the repository's run records (results/): the
    paired rows of the table, CVCL with both terms and its two baselines, seeds 1 and 2."""
    from cvcl.tracking.record_store import import_records

    chosen = [
        p
        for pattern in ("cvcl-l4-pcl1-vcl0.6-s[12]-*", "mean_teacher-l4-s[12]-*", "supervised-l4-s2-*")
        for p in sorted(RECORDS.glob(f"{pattern}.json"))
    ]
    assert len(chosen) == 5
    import_records(chosen, say=lambda line: None)
    monkeypatch.setenv("CVCL_EXPERIMENT", "cvcl-la")
    out = tmp_path / "executed" / "ablations.ipynb"
    proc = run_cvcl("notebook", "--execute", "--output", str(out), timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == ""  # no kernel warnings either
    assert f"-> {out}" in proc.stdout
    nb = json.loads(out.read_text())
    outputs = [o for cell in nb["cells"] for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    text = "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "5 finished runs in 'cvcl-la'" in text
    assert "±" in text and "mean_diff" in text
    # the chosen model's table and the last iteration's (these runs kept their last weights: equal)
    summaries = ["±" in "".join(o.get("data", {}).get("text/plain", "")) for o in outputs]
    assert sum(summaries) == 2
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert not list(out.parent.glob(".*tmp*"))  # written in one rename
    shipped = json.loads((ROOT / "notebooks" / "ablations.ipynb").read_text())
    assert all(not c.get("outputs") for c in shipped["cells"] if c["cell_type"] == "code")  # left untouched


def test_a_failing_cell_is_one_line_and_the_executed_copy_keeps_its_traceback(tmp_path):
    import nbformat

    notebook = tmp_path / "broken.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_markdown_cell("# two cells"),
                nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"),
                nbformat.v4.new_code_cell("1 / 0"),
            ]
        ),
        notebook,
    )
    proc = run_cvcl("notebook", "--execute", str(notebook))
    out = tmp_path / "broken.executed.ipynb"
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: broken.ipynb: cell 3 failed: ZeroDivisionError: division by zero; the executed copy, "
        f"traceback included: {out}"
    ]
    cells = nbformat.read(out, as_version=4).cells
    assert Path(cells[1].outputs[0]["text"].strip()).parent == Path(sys.executable).parent  # the project's Python
    assert cells[2].outputs[0]["output_type"] == "error"


def test_options_that_do_not_go_together_are_refused(capsys):
    for argv in (
        ["notebook", "--output", "x.ipynb"],
        ["notebook", "--execute", "--", "--no-browser"],
        ["notebook", "--frobnicate"],
    ):
        with pytest.raises(SystemExit) as stopped:
            cvcl(argv)
        assert stopped.value.code == 2, argv
    assert "put arguments for JupyterLab after --" in capsys.readouterr().err


def test_jupyterlab_serves_the_notebook_with_the_project_kernel(tmp_path):
    """``cvcl notebook`` as a user starts it (without a browser): the server lists the cvcl
    kernel, this environment's Python, and opens the notebook, whose metadata names it."""
    pytest.importorskip("jupyterlab")
    from tests.team_server import free_port

    port, token = free_port(), "t" + os.urandom(8).hex()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "HOME": str(tmp_path)}
    as_root = ["--allow-root"] if os.geteuid() == 0 else []  # JupyterLab refuses root otherwise (CI, containers)
    proc = subprocess.Popen(
        [
            CVCL,
            "notebook",
            "--",
            "--no-browser",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            *as_root,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            try:
                specs = requests.get(f"{base}/api/kernelspecs", headers=auth, timeout=5)
                if specs.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not answer within 120 s"
            time.sleep(0.5)
        kernel = specs.json()["kernelspecs"][jupyter.KERNEL_NAME]["spec"]
        assert Path(kernel["argv"][0]).parent == Path(sys.executable).parent
        opened = requests.get(f"{base}/api/contents/notebooks/ablations.ipynb", headers=auth, timeout=30)
        assert opened.status_code == 200  # the server's root is the repository
        assert opened.json()["content"]["metadata"]["kernelspec"]["name"] == jupyter.KERNEL_NAME
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
