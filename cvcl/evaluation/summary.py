"""Per-case rows -> mean and standard deviation over cases."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from cvcl.evaluation.metrics import METRICS


def summarize(rows: Iterable[dict], distance_unit: str) -> dict:
    """Mean and population std (ddof=0) of each metric over cases.

    Distances that are undefined for a case (exactly one mask empty) are left out of their
    mean; ``n_empty_prediction`` and ``n_empty_reference`` say how many cases that was.
    """
    rows = list(rows)
    out: dict = {}
    for name in METRICS:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[name] = float(values.mean()) if len(values) else math.nan
        out[f"{name}_std"] = float(values.std()) if len(values) else math.nan
    out["n_cases"] = len(rows)
    out["n_empty_prediction"] = sum(r.get("empty") == "prediction" for r in rows)
    out["n_empty_reference"] = sum(r.get("empty") == "reference" for r in rows)
    out["distance_unit"] = distance_unit
    return out
