"""The wrapper every entry point runs its ``main`` under: the stage scripts (``python -m
stages.<name>``) and the ``cvcl`` commands (:mod:`cvcl.commands`).

It turns an error of the user's input (:class:`~cvcl.errors.CvclError`) into one line on stderr
and exit status 2, Ctrl-C into status 130, and SIGTERM into the process's ordinary way out (open
MLflow runs closed, temporary outputs removed); under DVC it also ends a stage whose ``dvc``
process is gone, instead of leaving an orphan.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cvcl.errors import CvclError

EXIT_USER_ERROR = 2

_terminating: int | None = None  # the signal that asked this process to end, once one has


def _terminate(signum: int, frame) -> None:
    # `dvc queue kill` and schedulers send SIGTERM: raise, so that open MLflow runs are
    # marked FAILED and temporary outputs removed on the way out, instead of dying mid-write
    global _terminating
    _terminating = signum
    raise SystemExit(128 + signum)


def raise_if_terminating() -> None:
    """Raise the SystemExit of an earlier SIGTERM again. Long loops call it once per step: a
    handler that ran inside a finaliser (``__del__``, a weakref callback) had its exception
    printed and dropped by Python, and the work would go on to the end."""
    if _terminating is not None:
        raise SystemExit(128 + _terminating)


def parent_pid(pid: int) -> int:
    """The parent of process ``pid`` (from /proc; OSError when it is gone)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _dvc_ancestor() -> int | None:
    """The pid of the nearest ancestor process running DVC (``dvc repro``, ``dvc exp run``, a
    queue worker), or None (a stage started by hand, or no /proc)."""
    pid = os.getppid()
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            parent = parent_pid(pid)
        except OSError:
            return None
        if any(
            os.path.basename(part) in (b"dvc", b"dvc.exe") or part.endswith(b"/dvc/__main__.py") for part in cmdline[:2]
        ) or cmdline[:3] == [cmdline[0], b"-m", b"dvc"]:
            return pid
        pid = parent
    return None


def process_ended(pid: int) -> Callable[[float], bool]:
    """A test ``ended(timeout_s)`` of whether process ``pid`` has ended, waiting up to
    ``timeout_s``. Through a pidfd where the kernel has them: it turns readable when the process
    exits, zombie or not, and never speaks for a later process given the same pid (pids wrap at
    32768 on many machines). Otherwise (or when ``pid`` is already gone), ``/proc``."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is None:

        def gone(timeout_s: float) -> bool:
            time.sleep(timeout_s)
            return not Path(f"/proc/{pid}").exists()

        return gone
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return lambda timeout_s: bool(poller.poll(int(timeout_s * 1000)))


def _exit_with(parent: int, period_s: float = 1.0) -> None:
    """Send this process SIGTERM once ``parent`` is gone: DVC runs a stage through ``sh -c``,
    and killing ``dvc repro`` leaves the shell and the stage running, an orphan that would later
    mark its run FINISHED. SIGTERM takes the stage's ordinary way out (run FAILED, temporary
    outputs removed)."""
    ended = process_ended(parent)

    def watch() -> None:
        while not ended(period_s):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="dvc-parent-watch", daemon=True).start()


def run_main(main: Callable[[], int | None]) -> int:
    """Run ``main`` and return the process's exit status: ``main``'s own (None is 0), or 2 after
    one line ``error: <message>`` on stderr for a :class:`CvclError` (bad params, bad data, a bad
    option), or 130 on Ctrl-C. Any other exception keeps its traceback, since it is a bug."""
    signal.signal(signal.SIGTERM, _terminate)
    parent = _dvc_ancestor()
    if parent is not None:
        _exit_with(parent)
    try:
        return main() or 0
    except CvclError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` under :func:`run_main`; exit with its status when that is not 0.

    Errors caused by the user's input (bad params, bad data) print ``error: <message>``
    and exit with status 2; any other exception keeps its traceback, since it is a bug.
    """
    code = run_main(main)
    if code:
        sys.exit(code)
