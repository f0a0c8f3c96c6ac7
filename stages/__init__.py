"""The pipeline's stage scripts, run by DVC as ``python -m stages.<name>``.

DVC runs them with whatever ``python`` comes first on the PATH. When that interpreter lacks the
project's dependencies (``.venv`` not activated), stop with one line saying which interpreter it
was and what to do, instead of a ModuleNotFoundError traceback from deep inside a stage.
"""

import importlib.util
import sys

_NEEDED = ("numpy", "yaml", "h5py", "torch", "nibabel", "mlflow")


def _missing() -> list[str]:
    missing = []
    for name in _NEEDED:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except (ImportError, ValueError):
            missing.append(name)
    return missing


if _missing():
    sys.stderr.write(
        f"error: {sys.executable} lacks the project's dependencies (missing: {', '.join(_missing())}); "
        "run `source .venv/bin/activate` first (`make setup` creates it), or use "
        "`make exp ARGS='-S labeled=16'`\n"
    )
    sys.exit(2)
