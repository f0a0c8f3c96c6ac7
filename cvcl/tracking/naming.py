"""Names and tags that make runs readable in the MLflow UI."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from cvcl import methods
from cvcl.workspace import PROCESSED


def _num(value: float) -> str:
    return f"{value:g}"


def run_name(method: str, labeled: int, seed: int, values: Mapping[str, float | int | str]) -> str:
    """``cvcl-l16-pcl1-vcl1-s2``: the method, the labeled count, the method's switches
    (:attr:`cvcl.methods.Method.switches`, read from ``values``: dotted parameter names ->
    values, e.g. ``LossConfig.as_params()``; one at its ``quiet`` value is left out, so
    ``mt1`` is not spelt but ``cvcl-l4-mt0-pcl0-vcl0.6-s1`` is) and the seed;
    ``mean_teacher-l16-s2`` for a method without switches."""
    switches = [f"{s.label}{_num(v)}" for s, v in methods.get(method).named_switches(values)]
    return "-".join([method, f"l{labeled}", *switches, f"s{seed}"])


def data_version(lock_path: str | Path = "dvc.lock", output: str = str(PROCESSED)) -> str | None:
    """The content hash DVC recorded for ``output`` (the processed data), if it has one yet."""
    path = Path(lock_path)
    if not path.is_file():
        return None
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return None
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs", []) or []:
            if out.get("path") == output:
                return _out_hash(out)
    return None


def _out_hash(out: Mapping[str, object]) -> str | None:
    """The content hash of one ``outs`` entry of ``dvc.lock``. DVC 3 writes ``hash: md5`` (the
    algorithm's name) next to ``md5: <hex>``; DVC 2 only ``md5: <hex>``."""
    algorithm = out.get("hash")
    value = out.get(algorithm if isinstance(algorithm, str) and algorithm else "md5")
    return value if isinstance(value, str) and value else None
