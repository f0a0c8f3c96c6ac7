"""The docs cannot rot: every command a shell block names exists, every link resolves.

Each line of a ``bash``/``sh``/``shell``/``console`` block in README.md and docs/*.md is split
into commands (pipes, ``&&``, ``;``, ``$(...)``); each command's program is checked against
what exists in this checkout: Makefile targets, ``cvcl`` subcommands, ``python -m`` modules,
script paths, and a short list of outside tools the docs may name. Every relative link must
reach a file, and an anchor a heading of that file.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
# programs outside this repository the docs may tell users to run
OUTSIDE = {
    "dvc",
    "git",
    "mlflow",
    "pip",
    "python",
    "python3",
    "source",
    "export",
    "cd",
    "ls",
    "cat",
    "mkdir",
    "cp",
    "rm",
    "tar",
    "ssh",
    "ssh-keygen",
    "scp",
    "curl",
    "jupyter",
    "ray",
    "sbatch",
    "srun",
    "nvidia-smi",
    "psql",
    "chmod",
    "echo",
    "for",
    "do",
    "done",
    "if",
    "then",
    "fi",
    "while",
    "wait",
    "sleep",
    "kill",
    "scontrol",
    "env",
    "nohup",
    "tail",
    "head",
    "grep",
    "sqlite3",
    "bash",
    "sudo",
    "apt-get",
    "sha256sum",
    "unzip",
    "test",
    "[",
    "true",
    "time",
    "watch",
    "docker",
    "mv",
    "ln",
    "touch",
    "du",
    "df",
    "pytest",
    "shift",
}
DVC_COMMANDS = {
    "repro",
    "exp",
    "queue",
    "plots",
    "metrics",
    "params",
    "push",
    "pull",
    "fetch",
    "status",
    "remote",
    "init",
    "add",
    "gc",
    "dag",
    "checkout",
    "commit",
    "config",
    "cache",
    "stage",
    "doctor",
    "diff",
    "ls",
    "get",
    "import",
    "update",
    "install",
    "version",
}
FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, logical line) of every shell block line, continuations joined."""
    out: list[tuple[int, str]] = []
    lang, pending, start = None, "", 0
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence:
            lang = None if lang is not None else fence.group(1).lower()
            continue
        if lang in SHELL_LANGS:
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            out.append((start, pending + line))
            pending = ""
    return out


def commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line, as word lists (comments and prompts removed)."""
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    inner = re.findall(r"\$\(([^()]*)\)", line)
    line = re.sub(r"\$\([^()]*\)", "X", line)
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unclosed quote in an example's output
        return []
    result: list[list[str]] = []
    current: list[str] = []
    for word in words + [";"]:
        if word in {"&&", "||", ";", "|", "&"} or word.endswith(";"):
            if word.endswith(";") and word != ";":
                current.append(word[:-1])
            if current:
                result.append(current)
            current = []
        else:
            current.append(word)
    for sub in inner:
        result.extend(commands(sub))
    return result


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-zA-Z][\w-]*):", text, flags=re.M))


def cvcl_commands() -> set[str]:
    from cvcl.commands import COMMANDS

    return set(COMMANDS)


def problem(words: list[str]) -> str | None:
    """What is wrong with one command, or None."""
    while words and (ASSIGNMENT.match(words[0]) or words[0] in {"env", "nohup", "time", "sudo"}):
        words = words[1:]
    if not words:
        return None
    program, args = words[0], words[1:]
    if program.startswith((".venv/bin/", "$(BIN)/")):
        program = program.split("/")[-1]
    if program == "make":
        targets = [a for a in args if not a.startswith("-") and "=" not in a]
        missing = [t for t in targets if t not in makefile_targets()]
        return f"make target(s) {missing} not in the Makefile" if missing else None
    if program == "cvcl":
        sub = next((a for a in args if not a.startswith("-")), None)
        if sub is not None and sub not in cvcl_commands():
            return f"`cvcl {sub}` is not a command (cvcl --help lists them)"
        return None
    if program in {"python", "python3"}:
        if "-m" in args:
            module = args[args.index("-m") + 1]
            if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
                return f"module {module} does not exist"
            return None
        script = next((a for a in args if a.endswith(".py")), None)
        if script and not (ROOT / script).exists():
            return f"script {script} does not exist"
        return None
    if program == "dvc":
        sub = next((a for a in args if not a.startswith("-")), None)
        if sub is not None and sub not in DVC_COMMANDS:
            return f"`dvc {sub}` is not a DVC command"
        return None
    if program.startswith(("./", "benchmarks/", "stages/", ".ci/")):
        return None if (ROOT / program).exists() else f"{program} does not exist"
    if program in OUTSIDE or program.startswith(("#", "X")):
        return None
    return f"unknown program {program!r} (add it to OUTSIDE in tests/test_docs.py if it is a real outside tool)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_command_names_something_that_exists(page: Path):
    found = [
        f"{page.name}:{number}: {problem(words)}  [{line.strip()}]"
        for number, line in shell_blocks(page)
        for words in commands(line)
        if problem(words)
    ]
    assert not found, "\n".join(found)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: no network in tests
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"
    linked = set(re.findall(r"\(docs/([\w.-]+\.md)\)", "\n".join(lines)))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"docs pages the README's map does not link: {sorted(pages - linked)}"


def test_the_checker_catches_what_it_should():
    assert problem(["make", "no-such-target"])
    assert problem(["python", "-m", "cvcl.no_such_module"])
    assert problem(["python", "benchmarks/no_such.py"])
    assert problem(["frobnicate", "--all"])
    assert problem(["dvc", "exp", "run"]) is None
    assert problem(["make", "test"]) is None
    assert commands("A=1 make repro && dvc exp show  # a comment") == [["A=1", "make", "repro"], ["dvc", "exp", "show"]]
    assert ["cvcl", "presets", "la-mini"] in commands("dvc exp run $(cvcl presets la-mini) -S seed=1")
    assert slug("Results on real LA") == "results-on-real-la"
    assert slug("`cvcl.predict`: segment, then score") == "cvclpredict-segment-then-score"
