"""Safe extraction of the zip and tar archives datasets are distributed as.

Every member is checked before anything is written: absolute paths, ``..`` components, links
whose target leaves the extraction folder, and device files or FIFOs stop the extraction with a
:class:`~cvcl.errors.DataError` naming the archive and the member. Tar archives then go through
Python's own ``data`` filter as a second line of defence.
"""

from __future__ import annotations

import posixpath
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


def _link_escapes(member: str, target: str, relative_to_member: bool) -> bool:
    """True if link ``member`` -> ``target`` points outside the extraction folder."""
    target = target.replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        return True
    base = posixpath.dirname(member) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    return resolved == ".." or resolved.startswith("../")


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
        links = {}
        for info in members:  # check everything before writing anything
            why = _inside(info.filename)
            if why:
                _refuse(archive, info.filename, why)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", "replace")
                if _link_escapes(info.filename.rstrip("/"), link, relative_to_member=True):
                    _refuse(archive, info.filename, f"is a link out of the target ({link!r})")
                links[info.filename] = link
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no Unix type recorded
                _refuse(archive, info.filename, "is a special file")
        for info in members:
            out = target / info.filename.replace("\\", "/")
            if info.filename in links:
                out.parent.mkdir(parents=True, exist_ok=True)
                out.symlink_to(links[info.filename])
            elif info.is_dir():
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
            if m.issym() and _link_escapes(m.name, m.linkname, relative_to_member=True):
                _refuse(archive, m.name, f"is a link out of the target ({m.linkname!r})")
            if m.islnk() and (_inside(m.linkname) or _link_escapes(m.name, m.linkname, relative_to_member=False)):
                _refuse(archive, m.name, f"is a hard link out of the target ({m.linkname!r})")
            if m.isdev():
                _refuse(archive, m.name, "is a device file or FIFO")
        try:
            tf.extractall(target, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise DataError(archive, f"refused by the tar safety filter: {exc}") from None
