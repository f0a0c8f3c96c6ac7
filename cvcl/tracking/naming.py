"""Names and tags that make runs readable in the MLflow UI."""

from __future__ import annotations

from pathlib import Path

import yaml


def _num(value: float) -> str:
    return f"{value:g}"


def run_name(method: str, labeled: int, seed: int, pcl_weight: float, vcl_weight: float) -> str:
    """``cvcl-l16-pcl1-vcl1-s2`` for CVCL, ``mean_teacher-l16-s2`` for the others."""
    if method == "cvcl":
        return f"cvcl-l{labeled}-pcl{_num(pcl_weight)}-vcl{_num(vcl_weight)}-s{seed}"
    return f"{method}-l{labeled}-s{seed}"


def data_version(lock_path: str | Path = "dvc.lock", output: str = "data/processed") -> str | None:
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
                return out.get("md5") or out.get("hash")
    return None
