"""``cvcl params``: params.yaml's JSON Schema, and whether the files built on the declarations agree.

cvcl params schema              print params.yaml's JSON Schema (--preset: a preset's)
cvcl params schema --write      rewrite params.schema.json and presets/preset.schema.json
cvcl params check               list where the schema files, params.yaml or docs/experiments.md
                                disagree with the declarations (exit 1 if anywhere)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cvcl import params_schema

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="cvcl params",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    sub = ap.add_subparsers(dest="action", required=True)
    schema = sub.add_parser("schema", help="print or --write the JSON Schema")
    schema.add_argument("--preset", action="store_true", help="a preset's schema (dotted keys) instead")
    schema.add_argument("--write", action="store_true", help="rewrite both schema files in the repository")
    sub.add_parser("check", help="the schema files, params.yaml and the docs' table against the declarations")
    args = ap.parse_args(argv)
    if args.action == "schema" and args.write:
        for path in params_schema.write(ROOT):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if args.action == "schema":
        made = params_schema.preset_schema() if args.preset else params_schema.params_schema()
        sys.stdout.write(params_schema.render(made))
        return 0
    problems = params_schema.drift(ROOT)
    for problem in problems:
        print(problem)
    if not problems:
        print("params.yaml, its comments, both schema files and the docs' table agree with the declarations")
    return 1 if problems else 0
