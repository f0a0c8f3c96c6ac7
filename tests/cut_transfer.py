"""``python tests/cut_transfer.py <dvc arguments>``: DVC with one object upload cut halfway.

Used by ``tests/test_interrupted_transfers.py`` to kill ``dvc push`` / ``dvc exp push`` at a known
point instead of a lucky one. The ``CUT_AT``-th object upload (counting from 1) writes only the
first half of the object's bytes to the name DVC writes it under (DVC's temporary name on the
remote), then this process writes ``CUT_MARK`` (the object's source and that name, one a line)
and waits to be killed: the test SIGKILLs it from outside. Uploads before the cut run as usual;
uploads started after it (SSH runs several at once) are cut the same way.

Covered: folder remotes (``dvc_objects``' local ``put_file``/``copy``, reflink turned off so that
bytes are copied) and SSH remotes (``sshfs``' ``_put_file``, which ``dvc-ssh`` calls with a
temporary name). Not killed within 300 s, the process exits with status 3.
"""

import asyncio
import errno
import os
import sys
import time
from pathlib import Path

if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]  # tests/ holds modules (helpers, conftest) that are not DVC's

CUT_AT = int(os.environ["CUT_AT"])
MARK = Path(os.environ["CUT_MARK"])
WAIT_S = 300
_uploads = 0


def _due() -> bool:
    global _uploads
    _uploads += 1
    return _uploads >= CUT_AT


def _mark(src, dest) -> None:
    """Name the first cut upload in MARK, atomically and once (SSH uploads run concurrently)."""
    if not MARK.exists():
        tmp = MARK.with_name(MARK.name + ".writing")
        tmp.write_text(f"{src}\n{dest}\n")
        os.replace(tmp, MARK)


def _half(src: str) -> bytes:
    data = Path(src).read_bytes()
    return data[: len(data) // 2]


def _no_reflink(src, dst):
    # a copy-on-write clone (btrfs, xfs) is one call, with no half-written state to cut
    raise OSError(errno.ENOTSUP, "reflink turned off by tests/cut_transfer.py")


import dvc_objects.fs.local as local_fs
import dvc_objects.fs.system as fs_system

fs_system.reflink = _no_reflink
_copyfile = local_fs.copyfile


def _cut_copyfile(src, dest, *args, **kwargs):
    # LocalFileSystem.put_file and .copy copy to `<folder>/.<random>.tmp`, then rename
    if not os.path.basename(dest).endswith(".tmp") or not _due():
        return _copyfile(src, dest, *args, **kwargs)
    Path(dest).write_bytes(_half(src))
    _mark(src, dest)
    time.sleep(WAIT_S)
    os._exit(3)


local_fs.copyfile = _cut_copyfile

try:
    import sshfs.spec
except ImportError:  # no dvc-ssh: folder remotes only
    pass
else:
    _put_file = sshfs.spec.SSHFileSystem._put_file

    async def _cut_put_file(self, lpath, rpath, *args, **kwargs):
        if not _due():
            return await _put_file(self, lpath, rpath, *args, **kwargs)
        half = MARK.with_name(f"{MARK.name}.half{_uploads}")
        half.write_bytes(_half(lpath))
        await _put_file(self, str(half), rpath, *args, **kwargs)
        _mark(lpath, rpath)
        await asyncio.sleep(WAIT_S)
        os._exit(3)

    sshfs.spec.SSHFileSystem._put_file = _cut_put_file

from dvc.cli import main

sys.exit(main(sys.argv[1:]))
