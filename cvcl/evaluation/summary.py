"""Per-case rows of the evaluation and their summary over cases (means, stds, counts)."""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable, Sequence

import numpy as np

from cvcl.evaluation.config import DistanceUnit
from cvcl.evaluation.metrics import METRICS, case_metrics

DISTANCE_UNITS: tuple[str, ...] = typing.get_args(DistanceUnit)

# A prediction is degenerate when it is empty or labels at least this share of the volume as
# foreground (the LA atrium fills about 10% of a released crop, a BraTS tumour under 20% of the
# brain box). A run is flagged when every test case is degenerate: the network has collapsed
# to one class, whatever its Dice (a collapsed CVCL scored 7-23% Dice on LA, not 0).
DEGENERATE_FRACTION = 0.5


def case_row(
    case_id: str, pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float], distance_unit: str
) -> dict:
    """One row of ``per_case.csv``: the metrics of a case and its predicted and true volumes.

    Args:
        pred, truth: binary masks ``(X, Y, Z)`` on the case's grid.
        spacing_mm: the case's voxel size in mm (volumes always use it).
        distance_unit: ``"voxel"`` or ``"mm"``: the unit of hd95, asd and assd.
    Returns ``case_id``, the metrics of :func:`case_metrics` (Dice and Jaccard as fractions),
    ``distance_unit``, ``pred_ml`` and ``true_ml`` (millilitres), ``pred_fraction`` (predicted
    foreground voxels / all voxels), ``empty`` and ``degenerate`` (:data:`DEGENERATE_FRACTION`).
    """
    if distance_unit not in DISTANCE_UNITS:
        raise ValueError(f"distance_unit must be voxel or mm, got {distance_unit!r}")
    m = case_metrics(pred, truth, spacing_mm if distance_unit == "mm" else None)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0  # mm^3 -> ml
    n_pred = int(np.count_nonzero(pred))
    fraction = n_pred / max(pred.size, 1)
    return {
        "case_id": case_id,
        **{k: m[k] for k in METRICS},
        "distance_unit": distance_unit,
        "pred_ml": n_pred * voxel_ml,
        "true_ml": int(np.count_nonzero(truth)) * voxel_ml,
        "pred_fraction": fraction,
        "empty": m["empty"],
        "degenerate": n_pred == 0 or fraction >= DEGENERATE_FRACTION,
    }


def summarize(rows: Iterable[dict], distance_unit: str) -> dict:
    """Mean and population std (ddof=0) of each metric over cases, and the empty-mask counts.

    Dice and Jaccard average over every case (an empty prediction scores 0). Distances that
    are undefined for a case (exactly one mask empty, NaN) are left out of their mean and std;
    ``n_distance_cases`` says over how many cases the distances average, and
    ``n_empty_prediction``, ``n_empty_reference`` and ``n_empty_both`` count the empty cases;
    ``n_degenerate`` counts degenerate predictions and ``degenerate`` is true when every case's is.
    """
    rows = list(rows)
    out: dict = {}
    for name in METRICS:
        values = np.array([r[name] for r in rows], dtype=np.float64)
        values = values[~np.isnan(values)]
        out[name] = float(values.mean()) if len(values) else math.nan
        out[f"{name}_std"] = float(values.std()) if len(values) else math.nan
    out["n_cases"] = len(rows)
    out["n_distance_cases"] = sum(not math.isnan(r["hd95"]) for r in rows)
    out["n_empty_prediction"] = sum(r.get("empty") == "prediction" for r in rows)
    out["n_empty_reference"] = sum(r.get("empty") == "reference" for r in rows)
    out["n_empty_both"] = sum(r.get("empty") == "both" for r in rows)
    out["n_degenerate"] = sum(bool(r.get("degenerate")) for r in rows)
    out["degenerate"] = bool(rows) and out["n_degenerate"] == len(rows)
    out["distance_unit"] = distance_unit
    return out


LAST_SUFFIX = "_last"
# the figures repeated for the last iteration's weights (with their stds)
LAST_METRICS = ("dice", "jaccard", "hd95", "asd", "assd")


def last_iteration_summary(last: dict, info: dict) -> dict:
    """The last iteration's figures (``last``, a :func:`summarize` of its rows) under
    ``<metric>_last`` names, with the steps the two models come from (``info``, the infer
    stage's ``predictions/checkpoint.json``: absent keys are left out)."""
    out: dict = {}
    for name in LAST_METRICS:
        out[name + LAST_SUFFIX] = last[name]
        out[f"{name}_std{LAST_SUFFIX}"] = last[f"{name}_std"]
    out["n_degenerate" + LAST_SUFFIX] = last["n_degenerate"]
    for key in ("chosen_step", "last_step"):
        if info.get(key) is not None:
            out[key] = info[key]
    return out
