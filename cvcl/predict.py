"""``python -m cvcl.predict ...``: the old spelling of ``cvcl predict ...``, kept as an alias
(scripts and notes written before the ``cvcl`` command keep working)."""

import sys

from cvcl.commands import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
