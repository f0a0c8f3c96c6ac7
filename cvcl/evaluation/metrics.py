"""Dice, Jaccard, HD95, ASD and ASSD, equal to medpy's, computed on the objects' bounding box.

medpy's definitions (``medpy.metric.binary``):

- surface of a mask: the mask minus its binary erosion with the 6-connected structuring
  element (voxels outside the volume count as background);
- ``d(P->G)``: for each surface voxel of P, the Euclidean distance (voxels, or mm with a
  spacing) to the nearest surface voxel of G;
- HD95: the 95th percentile of ``d(P->G)`` and ``d(G->P)`` concatenated; ASD: the mean of
  ``d(P->G)``; ASSD: the mean of ``d(P->G)`` and ``d(G->P)`` concatenated (medpy 0.5; older
  medpy releases averaged the two directional means instead).

Everything a surface distance depends on lies inside the bounding box of ``P | G``, so the
erosions and distance transforms run on that box (plus a one-voxel margin) instead of the
whole volume, and each surface and distance map is computed once for both directions.

Empty masks (medpy raises): see :func:`case_metrics` for the policy.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

_STRUCTURE = ndi.generate_binary_structure(3, 1)
METRICS = ("dice", "jaccard", "hd95", "asd", "assd")


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of the True voxels, grown by one voxel and clipped to the volume."""
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, mask.shape[axis])))
    return tuple(out)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, structure=_STRUCTURE, border_value=0)


def surface_distances(pred: np.ndarray, ref: np.ndarray,
                      spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(d(P->G), d(G->P))`` for two non-empty binary masks of the same shape.

    Matches ``medpy.metric.binary.__surface_distances`` in both directions. The one-voxel
    margin of the crop keeps erosion identical: voxels just outside the box are background
    in the volume too, and where the box meets the volume border both use background.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    box = _bbox(pred | ref)
    p, g = pred[box], ref[box]
    sp = None if spacing is None else np.asarray(spacing, dtype=np.float64)
    p_surf, g_surf = _surface(p), _surface(g)
    d_pg = ndi.distance_transform_edt(~g_surf, sampling=sp)[p_surf]
    d_gp = ndi.distance_transform_edt(~p_surf, sampling=sp)[g_surf]
    return d_pg, d_gp


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> dict[str, float]:
    """Dice, Jaccard, HD95, ASD, ASSD of one case, plus ``empty`` telling which mask was empty.

    Policy for empty masks (medpy raises on them):

    - prediction and reference both empty: agreement; Dice = Jaccard = 1, distances 0;
    - exactly one empty: Dice = Jaccard = 0 and the distances are undefined (NaN); the
      summary reports such cases separately and leaves them out of the distance means.
    """
    pred = np.asarray(pred, dtype=bool)
    ref = np.asarray(ref, dtype=bool)
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    if n_pred == 0 and n_ref == 0:
        return {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0, "assd": 0.0, "empty": "both"}
    inter = int(np.count_nonzero(pred & ref))
    dice = 2.0 * inter / (n_pred + n_ref)
    jaccard = inter / (n_pred + n_ref - inter)
    if n_pred == 0 or n_ref == 0:
        nan = math.nan
        return {"dice": dice, "jaccard": jaccard, "hd95": nan, "asd": nan, "assd": nan,
                "empty": "prediction" if n_pred == 0 else "reference"}
    d_pg, d_gp = surface_distances(pred, ref, spacing)
    both = np.concatenate((d_pg, d_gp))
    return {
        "dice": dice,
        "jaccard": jaccard,
        "hd95": float(np.percentile(both, 95)),
        "asd": float(d_pg.mean()),
        "assd": float(both.mean()),
        "empty": "",
    }
