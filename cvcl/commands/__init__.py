"""The ``cvcl`` command: one subcommand per thing a user does outside the pipeline's stages.

    cvcl --help                 every command with one line each
    cvcl <command> --help       that command's options
    cvcl <command> [ARGS...]    run it

Each command is the module of its name here (``sweep-ray`` is :mod:`cvcl.commands.sweep_ray`),
holding its argument parsing and a ``main(argv) -> int`` that calls the library for the work.
Every command runs under :func:`cvcl.entrypoint.run_main`: an error of the user's input is one
line ``error: ...`` on stderr with exit status 2, as in the stages. This module imports no
command until one is asked for, so ``cvcl --help`` answers at once.
"""

from __future__ import annotations

import difflib
import importlib
import sys

from cvcl import __version__

# name -> the one line `cvcl --help` shows; the module is cvcl.commands.<name with - as _>
COMMANDS: dict[str, str] = {
    "predict": "segment scans with a trained model (a checkpoint, runs:/ or models:/ URI)",
    "register": "register a sweep's best run as a model version in MLflow",
    "relog": "re-log a model logged as a pickle (before the weights format) as weights, in its run",
    "sweep": "queue the ablation grid as DVC experiments (or run it on Ray with --executor ray)",
    "sweep-ray": "run a grid of experiments on a Ray cluster, one task per point",
    "presets": "print a named preset as `dvc exp run -S` arguments",
    "params": "params.yaml's JSON Schema (for editors), and the check that it, params.yaml and the docs agree",
    "report": "print the evaluation's metrics table (metrics/metrics.json)",
    "records": "import run records into MLflow, or export an experiment's runs as records",
    "server": "start the team's MLflow tracking server (PostgreSQL, logins)",
    "remote": "set up the DVC remote with verify = true",
    "notebook": "open the ablation notebook in JupyterLab, or run it headless with --execute",
}
EXIT_USAGE = 2


def module_name(command: str) -> str:
    """The module implementing ``command``."""
    return f"{__name__}.{command.replace('-', '_')}"


def usage() -> str:
    """The text of ``cvcl --help``."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: cvcl <command> [options]   (cvcl <command> --help for its options)",
        "",
        "Commands of the CVCL pipeline (the stages themselves run with dvc repro / dvc exp run):",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``cvcl <command> [ARGS...]``: run the command; its exit status."""
    from cvcl.entrypoint import run_main

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(), file=sys.stderr)
        return EXIT_USAGE
    command, rest = argv[0], argv[1:]
    if command in ("-h", "--help", "help"):
        print(usage())
        return 0
    if command == "--version":
        print(f"cvcl {__version__}")
        return 0
    if command not in COMMANDS:
        near = difflib.get_close_matches(command, COMMANDS, n=1, cutoff=0.0)
        hint = f"; the closest is '{near[0]}'" if near else ""
        print(f"error: no command '{command}'{hint} (cvcl --help lists them)", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(module_name(command))
    return run_main(lambda: module.main(rest))
