"""Open the ablation notebook in JupyterLab on the project's kernel, or run it headless.

    cvcl notebook                                   # JupyterLab with notebooks/ablations.ipynb open
    cvcl notebook -- --no-browser --port 8890       # arguments after -- go to JupyterLab
    cvcl notebook --execute [--output PATH]         # run every cell, write the executed copy

(``make notebook``). The kernel is ``cvcl``, this environment's Python (:mod:`cvcl.jupyter`,
installed into the environment on first use). The notebook reads the MLflow store
``MLFLOW_TRACKING_URI`` names (default the repository's ``mlflow.db``) and the experiment
``CVCL_EXPERIMENT`` (default ``cvcl-<dataset>``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cvcl.jupyter import ABLATIONS, ensure_kernel, execute, lab_command


def default_output(notebook: Path) -> Path:
    """Where ``--execute`` writes without ``--output``: ``<name>.executed.ipynb`` beside the
    notebook (git-ignored: executed outputs are not committed)."""
    return notebook.with_name(f"{notebook.stem}.executed.ipynb")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(
        prog="cvcl notebook",
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after -- go to JupyterLab unchanged.",
    )
    ap.add_argument(
        "notebook",
        nargs="?",
        type=Path,
        default=ABLATIONS,
        help="the notebook (default: the repository's notebooks/ablations.ipynb)",
    )
    ap.add_argument("--execute", action="store_true", help="run it headless instead of opening JupyterLab")
    ap.add_argument(
        "--output",
        type=Path,
        help="--execute: where to write the executed copy (default: <notebook>.executed.ipynb beside it)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="--execute: the longest a cell may run, in seconds (default 600)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)  # JupyterLab's arguments follow --
    args, unknown = ap.parse_known_args(argv[:split])
    extra = argv[split + 1 :]
    if unknown:
        ap.error(f"unknown arguments {' '.join(unknown)} (put arguments for JupyterLab after --)")
    if args.execute and extra:
        ap.error("--execute runs no JupyterLab: arguments after -- are for JupyterLab only")
    if args.output is not None and not args.execute:
        ap.error("--output goes with --execute")
    if args.timeout <= 0:
        ap.error(f"--timeout: expected a positive number of seconds, got {args.timeout:g}")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    args, jupyter_args = parse_args(argv)
    if args.execute:
        output = args.output or default_output(args.notebook)
        cells = execute(args.notebook, output, args.timeout)
        print(f"notebook: {cells} code cells of {args.notebook} run -> {output}")
        return 0
    cmd = lab_command(args.notebook, jupyter_args)
    ensure_kernel()  # the kernel the notebook's metadata names
    # JupyterLab takes this process's place: Ctrl-C and SIGTERM reach it directly, as when it is
    # started by hand, and no wrapper is left to outlive it
    os.execv(cmd[0], cmd)
    return 0  # not reached
