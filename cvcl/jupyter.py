"""The project's Jupyter kernel, JupyterLab on a notebook, and a notebook run headless.

The kernel ``cvcl`` is this environment's own Python (``sys.executable``: the project's .venv).
Its spec lives inside the environment (``<sys.prefix>/share/jupyter/kernels/cvcl``), never in
the user's home, where a JupyterLab started from the environment finds it; the project's
notebooks name it in their metadata, so they open on it. A ``python3`` kernel would be whatever
interpreter a user-level spec in the home folder names, which may lack the project.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cvcl.errors import CvclError
from cvcl.io.atomic import write_text

KERNEL_NAME = "cvcl"
KERNEL_DISPLAY_NAME = "Python (cvcl)"
ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = ROOT / "notebooks" / "ablations.ipynb"


class NotebookError(CvclError):
    """A notebook that cannot be opened or run, or a cell of it that failed."""


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise NotebookError(
            f"{module} is not installed in {sys.prefix}: pip install -e '.[dev]' (make setup installs it)"
        )


def kernel_dir(prefix: str | Path = sys.prefix) -> Path:
    """Where the spec of the kernel :data:`KERNEL_NAME` lives in the environment ``prefix``."""
    return Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME


def ensure_kernel() -> Path:
    """Install the kernel spec :data:`KERNEL_NAME` into this environment unless it is there and
    runs this environment's Python (a venv made again elsewhere gets it rewritten); its folder."""
    spec = kernel_dir() / "kernel.json"
    try:
        # python or python3 of the same bin/ (not resolved: a venv's python links to the base one)
        if Path(json.loads(spec.read_text())["argv"][0]).parent == Path(sys.executable).parent:
            return spec.parent
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass  # missing or not ours: (re)install it
    _require("ipykernel")
    from ipykernel.kernelspec import install

    return Path(install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix))


def _checked(notebook: Path) -> Path:
    if not notebook.is_file():
        raise NotebookError(f"{notebook}: no such notebook")
    return notebook.resolve()


def lab_command(notebook: Path, jupyter_args: Sequence[str] = ()) -> list[str]:
    """The command that serves JupyterLab from this environment with ``notebook`` open; its file
    browser starts at the repository root when the notebook is inside it."""
    notebook = _checked(notebook)
    _require("jupyterlab")
    root = ROOT if notebook.is_relative_to(ROOT) else notebook.parent
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", str(notebook), *jupyter_args]


def _encryption() -> dict[str, str]:
    """Keyword arguments that start the kernel with CurveZMQ transport encryption where this
    jupyter_client and pyzmq offer it (the spec ipykernel writes declares support): the code and
    outputs then do not cross the loopback in clear, and the kernel does not warn that they do."""
    import zmq
    from jupyter_client import KernelManager

    if "transport_encryption" in KernelManager.class_traits() and zmq.has("curve"):
        return {"transport_encryption": "auto"}
    return {}


def _failed_cell(nb: Any) -> int | None:
    """The number (1-based, all cells counted) of the first cell with an error output."""
    for number, cell in enumerate(nb.cells, 1):
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return number
    return None


def execute(notebook: Path, output: Path, timeout_s: float | None = 600) -> int:
    """Run ``notebook`` top to bottom on the kernel :data:`KERNEL_NAME` (whatever kernel its
    metadata names), in the notebook's own folder as JupyterLab does, and write the executed copy
    to ``output`` (atomically: a reader never sees half a notebook); the number of code cells run.

    A failing cell still writes the copy, with its traceback, and raises one-line
    :class:`NotebookError` naming the cell and the exception. ``timeout_s`` bounds each cell.
    """
    notebook = _checked(notebook)
    for module in ("nbformat", "nbclient"):
        _require(module)
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    ensure_kernel()
    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError) as exc:  # nbformat's NotJSONError is a ValueError
        raise NotebookError(f"{notebook}: not a readable notebook ({type(exc).__name__})") from None
    client = NotebookClient(
        nb, kernel_name=KERNEL_NAME, timeout=timeout_s, resources={"metadata": {"path": str(notebook.parent)}}
    )
    problem = None
    try:
        client.execute(**_encryption())
    except CellExecutionError as exc:
        cell = _failed_cell(nb)
        problem = f"cell {cell if cell else '?'} failed: {exc.ename}: {exc.evalue}"
    except CellTimeoutError:
        problem = f"a cell ran longer than {timeout_s:g} s (--timeout)"
    except DeadKernelError as exc:
        problem = f"the kernel died ({exc})"
    write_text(output, nbformat.writes(nb))
    if problem:
        raise NotebookError(f"{notebook.name}: {problem}; the executed copy, traceback included: {output}")
    return sum(cell.cell_type == "code" for cell in nb.cells)
