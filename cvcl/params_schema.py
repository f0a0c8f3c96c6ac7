"""params.yaml's JSON Schema, and the check that keeps the schema, params.yaml and the docs agreeing.

The sections' pydantic dataclasses (:mod:`cvcl.settings`) are the one source. From them:

- ``params.schema.json``: params.yaml's nested keys, each with its type, bounds, choices,
  default and help (the description), unknown keys refused; params.yaml's first line points the
  YAML language server at it (VS Code's YAML extension, Neovim's yamlls, JetBrains), which then
  completes keys and flags a wrong type, range or choice as the user types;
- ``presets/preset.schema.json``: the same keys, dotted, for the presets (flat mappings);
- :func:`drift` compares both files, params.yaml's keys, values and comments, and the docs'
  params table with what the sections declare now. ``cvcl params check`` prints it,
  ``cvcl params schema --write`` rewrites the two schema files after a declaration changes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from cvcl.settings import SECTIONS, SETTINGS, section_class

# Draft 7: what the YAML language server validates with (pydantic writes 2020-12; the only
# difference it uses is a tuple's positional items, prefixItems in 2020-12, items in draft 7).
DIALECT = "http://json-schema.org/draft-07/schema#"
PARAMS_SCHEMA = "params.schema.json"
PRESET_SCHEMA = "presets/preset.schema.json"
DOCS_TABLE = ("docs/experiments.md", "### The params users change most")


def _section_schema(cls: type, prefix: str) -> dict[str, Any]:
    """A section's schema with its nested sections inlined and the fields that are not keys dropped."""
    schema = TypeAdapter(cls).json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: dict[str, Any], at: str) -> dict[str, Any]:
        node = defs[node["$ref"].split("/")[-1]] if "$ref" in node else node
        props = {}
        for key, value in node["properties"].items():
            name = f"{at}.{key}" if at else key
            if name in SETTINGS:
                props[key] = value
            elif "$ref" in value:
                props[key] = inline(value, name)
        return {**node, "properties": props}

    return inline(schema, prefix)


def params_schema() -> dict[str, Any]:
    """The JSON Schema of params.yaml (nested sections, params.yaml's order)."""
    root: dict[str, Any] = {"type": "object", "properties": {}}
    for prefix, _ in SECTIONS:
        section = _section_schema(section_class(prefix), prefix)
        node = root
        for part in prefix.split(".") if prefix else []:
            node = node["properties"].setdefault(part, {"type": "object", "properties": {}})
        node["properties"].update(section["properties"])  # the nested ones may come first
        node.update({k: v for k, v in section.items() if k != "properties"})
    root.update(title="CVCL params.yaml", additionalProperties=False)
    return {"$schema": DIALECT, **_draft7(_order(root, ""))}


def _draft7(node: Any) -> Any:
    if isinstance(node, list):
        return [_draft7(v) for v in node]
    if not isinstance(node, dict):
        return node
    return {("items" if k == "prefixItems" else k): _draft7(v) for k, v in node.items()}


def _order(node: dict[str, Any], at: str) -> dict[str, Any]:
    """Properties in params.yaml's order (a section's own keys, then its nested sections)."""
    names = [name for name in SETTINGS if name.startswith(at)]
    keys = list(dict.fromkeys(name[len(at) :].split(".")[0] for name in names))
    props = node["properties"]
    ordered = {k: _order(props[k], f"{at}{k}.") if "properties" in props[k] else props[k] for k in keys}
    return {**node, "properties": ordered}


def preset_schema(nested: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema of a preset: the same keys as ``nested`` (params.yaml's schema, made when
    not given), dotted (``train.lr: 0.03``)."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], at: str) -> None:
        for key, value in node["properties"].items():
            if "properties" in value:
                walk(value, f"{at}{key}.")
            else:
                flat[f"{at}{key}"] = value

    walk(nested if nested is not None else params_schema(), "")
    return {
        "$schema": DIALECT,
        "title": "CVCL preset (presets/<name>.yaml): dotted params.yaml keys",
        "type": "object",
        "properties": flat,
        "additionalProperties": False,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def schemas() -> dict[str, dict[str, Any]]:
    """Both schema files' contents by their path in the repository (the sections read once)."""
    nested = params_schema()
    return {PARAMS_SCHEMA: nested, PRESET_SCHEMA: preset_schema(nested)}


def write(root: Path) -> list[Path]:
    """Rewrite the two schema files under the repository ``root``; the paths written."""
    from cvcl.io.atomic import write_text

    written = []
    for rel, schema in schemas().items():
        write_text(root / rel, render(schema))
        written.append(root / rel)
    return written


def drift(root: Path) -> list[str]:
    """Where the schema files, params.yaml or the docs' table disagree with the declarations."""
    problems = []
    made = schemas()
    for rel, schema in made.items():
        path = root / rel
        if not path.is_file() or path.read_text() != render(schema):
            problems.append(f"{rel}: not what the declarations give; run: cvcl params schema --write")
    flat = made[PRESET_SCHEMA]["properties"]
    problems += _params_yaml_drift((root / "params.yaml").read_text(), flat)
    line = f"# yaml-language-server: $schema={Path(PRESET_SCHEMA).name}\n"
    for preset in sorted((root / "presets").glob("*.yaml")):
        if not preset.read_text().startswith(line):
            problems.append(f"presets/{preset.name}: the first line must be {line.strip()!r}")
    problems += _docs_drift((root / DOCS_TABLE[0]).read_text(), flat)
    return problems


def commented_keys(text: str) -> dict[str, tuple[Any, str]]:
    """Each key of a block-style YAML file (dotted) -> (its value, the comment on its line)."""
    found: dict[str, tuple[Any, str]] = {}
    path: list[str] = []
    for line in text.splitlines():
        match = re.match(r"^( *)([A-Za-z_]\w*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)) // 2, match.group(2), match.group(3)
        value, _, comment = rest.partition("#")
        path = [*path[:indent], key]
        if value.strip():
            found[".".join(path)] = (yaml.safe_load(value), comment.strip())
    return found


def _params_yaml_drift(text: str, flat: dict[str, Any]) -> list[str]:
    """Every key of params.yaml, in the declared order, holds its default, and its comment is the
    declared help or starts with it and goes on after a non-word character (``# voxels, X Y Z``)."""
    problems = []
    if not text.startswith(f"# yaml-language-server: $schema={PARAMS_SCHEMA}\n"):
        problems.append(f"params.yaml: the first line must be '# yaml-language-server: $schema={PARAMS_SCHEMA}'")
    keys = commented_keys(text)
    if list(keys) != list(flat):
        problems.append(f"params.yaml: its keys differ from the declared ones: {sorted(set(keys) ^ set(flat))}")
    for name, (value, comment) in keys.items():
        if name not in flat:
            continue
        want, default = flat[name].get("description", ""), flat[name].get("default")
        if value != default:
            problems.append(f"params.yaml: {name} = {value!r}, declared default {default!r}")
        if not (comment == want or (comment.startswith(want) and not comment[len(want)].isalnum())):
            problems.append(f"params.yaml: {name}: comment {comment!r} does not start with {want!r}")
    return problems


def _spellings(value: object) -> set[str]:
    """How the docs may show a default: as YAML does, lists also as 48x48x32 or 16/16/8, booleans
    also as on/off."""
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"true", "on"} if value else {"false", "off"}
    if isinstance(value, list):
        return {sep.join(map(str, value)) for sep in ("x", "/")}
    return {str(value)}


def docs_table(text: str) -> list[tuple[list[str], list[str]]]:
    """(names, defaults) per row of the docs' table of the params users change most."""
    table = text.split(DOCS_TABLE[1], 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in table.splitlines()[2:]:
        names_cell, defaults_cell = line.split("|")[1:3]
        names = re.findall(r"`([^`]+)`", names_cell)
        rows.append((names, [d.strip().strip("`") for d in defaults_cell.split(",")]))
    return rows


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _docs_drift(text: str, flat: dict[str, Any]) -> list[str]:
    where, problems = DOCS_TABLE[0], []
    for names, shown in docs_table(text):
        if len(names) != len(shown):
            problems.append(f"{where}: {names} shows {len(shown)} defaults")
            continue
        for name, value in zip(names, shown, strict=True):
            if name not in flat:
                problems.append(f"{where}: names {name}, which is not declared")
                continue
            default = flat[name].get("default")
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            same = _number(value) == default if numeric else value in _spellings(default)
            if not same:
                problems.append(f"{where}: {name} = {value}, declared {default}")
    return problems
