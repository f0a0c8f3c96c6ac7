"""Named parameter sets (``presets/<name>.yaml``) turned into ``dvc exp run -S`` arguments.

A preset is a flat mapping of dotted parameter names to values. ``cvcl presets NAME``
prints ``-S name=value`` pairs, so ``dvc exp run $(cvcl presets paper-la)`` runs the
paper's configuration as one experiment, with params.yaml itself unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from cvcl.errors import DataError, ParamError
from cvcl.settings import check_known

PRESETS = Path(__file__).resolve().parents[2] / "presets"


def load_preset(name: str, folder: Path = PRESETS) -> dict:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise DataError(path, f"no such preset (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise DataError(path, "expected a mapping of dotted parameter names to values")
    try:
        check_known(data, str(path))
    except ParamError as exc:
        raise DataError(path, str(exc)) from None
    return data


def set_arguments(preset: dict) -> list[str]:
    """``["-S", "name=value", ...]`` with values as YAML flow scalars/lists without spaces,
    so the output survives the shell's word splitting in ``$(...)``."""
    args = []
    for name, value in preset.items():
        text = (
            json.dumps(value, separators=(",", ":"))
            if isinstance(value, (list, dict))
            else ("null" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
        )
        args += ["-S", f"{name}={text}"]
    return args


def main(argv: list[str] | None = None) -> int:
    known = ", ".join(sorted(p.stem for p in PRESETS.glob("*.yaml"))) or "none"
    ap = argparse.ArgumentParser(
        prog="cvcl presets",
        description=__doc__.splitlines()[0],
        epilog=f"presets: {known}; e.g. dvc exp run $(cvcl presets paper-la)",
    )
    ap.add_argument("name", help="the preset, presets/<name>.yaml")
    args = ap.parse_args(argv)
    print(" ".join(set_arguments(load_preset(args.name))))
    return 0
