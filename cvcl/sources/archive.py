"""Safe extraction of the zip and tar archives datasets are distributed as.

Every member is checked before anything is written: absolute paths, ``..`` components,
symbolic and hard links (none of the supported layouts needs one, and a chain of links that
each look harmless can point the next member's write anywhere), and device files or FIFOs stop
the extraction with a :class:`~cvcl.errors.DataError` naming the archive and the member. Each
file's resolved real path is then checked against the destination just before it is written.
Tar archives also go through Python's own ``data`` filter as a further line of defence.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

from cvcl.errors import DataError

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_DRIVE = re.compile(r"^[A-Za-z]:")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def _inside(name: str) -> str | None:
    """Why member path ``name`` is unsafe, or None. ``name`` uses ``/`` (archive convention)."""
    name = name.replace("\\", "/")
    if name.startswith("/") or _DRIVE.match(name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' component"
    return None


def _destination(archive: Path, target: Path, member: str) -> Path:
    """Where ``member`` goes, after checking that its real path stays inside ``target``."""
    out = target / member.replace("\\", "/")
    root = os.path.realpath(target)
    real = os.path.realpath(out)
    if real != root and not real.startswith(root + os.sep):
        _refuse(archive, member, f"would be written outside the destination ({real})")
    return out


def safe_extract(archive: Path, target: Path) -> None:
    """Extract ``archive`` (zip or tar, any common compression) into the folder ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            _extract_zip(archive, target)
        else:
            _extract_tar(archive, target)
    except DataError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DataError(archive, f"is not a readable archive ({type(exc).__name__}: {exc})") from None


def _refuse(archive: Path, member: str, why: str) -> None:
    raise DataError(archive, f"member {member!r} {why}; refusing to extract the archive")


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:  # check everything before writing anything
            why = _inside(info.filename)
            if why:
                _refuse(archive, info.filename, why)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", "replace")
                _refuse(
                    archive, info.filename, f"is a symbolic link (to {link!r}); archives with links are not supported"
                )
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no Unix type recorded
                _refuse(archive, info.filename, "is a special file")
        for info in members:
            out = _destination(archive, target, info.filename)
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as tf:  # compression detected from the content
        members = tf.getmembers()
        for m in members:
            why = _inside(m.name)
            if why:
                _refuse(archive, m.name, why)
            if m.issym():
                _refuse(
                    archive, m.name, f"is a symbolic link (to {m.linkname!r}); archives with links are not supported"
                )
            if m.islnk():
                _refuse(archive, m.name, f"is a hard link (to {m.linkname!r}); archives with links are not supported")
            if m.isdev():
                _refuse(archive, m.name, "is a device file or FIFO")
            _destination(archive, target, m.name)
        try:
            tf.extractall(target, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise DataError(archive, f"refused by the tar safety filter: {exc}") from None
        except TypeError:
            # Pythons before 3.10.12 / 3.11.4 have no extraction filters (nor tarfile.data_filter)
            # and refuse the keyword; extracting without the filter would drop a defence silently
            if hasattr(tarfile, "data_filter"):
                raise
            raise DataError(
                archive,
                "needs Python 3.10.12+, 3.11.4+ or 3.12+ to extract a tar archive safely (tarfile's 'data' "
                f"filter); this is Python {platform.python_version()}",
            ) from None
