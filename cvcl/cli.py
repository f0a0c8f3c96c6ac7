"""Entry-point wrapper for the stage scripts: one-line errors and clean exit codes."""

from __future__ import annotations

import signal
import sys
from typing import Callable

from cvcl.errors import CvclError

EXIT_USER_ERROR = 2


def _terminate(signum: int, frame) -> None:
    # `dvc queue kill` and schedulers send SIGTERM: raise, so that open MLflow runs are
    # marked FAILED and temporary outputs removed on the way out, instead of dying mid-write
    raise SystemExit(128 + signum)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` and turn a :class:`CvclError` into one line on stderr.

    Errors caused by the user's input (bad params, bad data) print ``error: <message>``
    and exit with status 2; any other exception keeps its traceback, since it is a bug.
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except CvclError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
