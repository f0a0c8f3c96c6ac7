"""Entry-point wrapper for the stage scripts: one-line errors and clean exit codes."""

from __future__ import annotations

import sys
from typing import Callable

from cvcl.errors import CvclError

EXIT_USER_ERROR = 2


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` and turn a :class:`CvclError` into one line on stderr.

    Errors caused by the user's input (bad params, bad data) print ``error: <message>``
    and exit with status 2; any other exception keeps its traceback, since it is a bug.
    """
    try:
        main()
    except CvclError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
