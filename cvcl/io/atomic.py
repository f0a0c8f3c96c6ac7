"""Writes that leave either the complete output or nothing.

Every stage writes to a temporary sibling path and renames it into place at the end, so a
failure (bad input, a crash, Ctrl-C) never leaves a half-written file or folder for DVC or
the next stage to pick up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    With ``directory=True`` the temporary path is an (empty) directory the caller fills.
    On any exception the temporary path is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if directory:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders
        if target.exists():
            _remove(target)
        os.replace(tmp, target)
    else:
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON to ``target`` atomically."""
    write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_secret(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (a password, a key, a URI with a login) to ``target`` atomically, readable
    by its owner only (mode 600) from the first byte to the last write.

    The text goes to a temporary sibling that ``mkstemp`` creates exclusively with mode 600,
    whatever the umask, and is renamed over ``target``: rewriting a file that was 644 leaves it
    600 (``Path.touch(mode=...)`` sets the mode only of a file it creates), and a symlink at
    ``target`` is replaced, never written through.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            os.fchmod(out.fileno(), 0o600)  # mkstemp's mode already; stated, as the guarantee rests on it
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
