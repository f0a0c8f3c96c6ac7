"""``python -m cvcl.commands <command> ...``: the ``cvcl`` command without its script on the PATH."""

import sys

from cvcl.commands import main

sys.exit(main())
