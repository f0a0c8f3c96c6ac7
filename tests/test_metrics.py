import math

import numpy as np
import pytest
from medpy.metric import binary as mb

from cvcl.evaluation.metrics import case_metrics, surface_distances
from cvcl.evaluation.summary import summarize
from tests.conftest import ball


def medpy_metrics(pred, ref, spacing=None):
    return {"dice": mb.dc(pred, ref), "jaccard": mb.jc(pred, ref), "hd95": mb.hd95(pred, ref, spacing),
            "asd": mb.asd(pred, ref, spacing), "assd": mb.assd(pred, ref, spacing)}


@pytest.mark.parametrize("spacing", [None, (0.625, 0.625, 0.625), (0.8, 1.1, 2.5)])
def test_equal_to_medpy_on_overlapping_blobs(spacing):
    ref = ball((40, 36, 30), (20, 18, 15), 9)
    pred = ball((40, 36, 30), (23, 16, 14), 8) | ball((40, 36, 30), (8, 8, 6), 3)
    ours = case_metrics(pred, ref, spacing)
    for name, value in medpy_metrics(pred, ref, spacing).items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_objects_touching_the_border_match_medpy():
    ref = np.zeros((20, 20, 20), bool)
    ref[:8, :, 3:9] = True
    pred = np.zeros_like(ref)
    pred[:10, 2:, :7] = True
    ours = case_metrics(pred, ref)
    for name, value in medpy_metrics(pred, ref).items():
        assert ours[name] == pytest.approx(value, rel=1e-9)


def test_surface_distances_are_directional():
    ref = ball((30, 30, 30), (15, 15, 15), 6)
    pred = ball((30, 30, 30), (15, 15, 15), 10)
    d_pg, d_gp = surface_distances(pred, ref)
    assert d_pg.mean() > d_gp.mean() - 1e-9
    assert np.allclose(sorted(d_pg), sorted(mb.__dict__["__surface_distances"](pred, ref)))


def test_empty_masks_follow_the_documented_policy():
    empty = np.zeros((10, 10, 10), bool)
    blob = ball((10, 10, 10), (5, 5, 5), 3)
    both = case_metrics(empty, empty)
    assert both["dice"] == 1.0 and both["hd95"] == 0.0 and both["empty"] == "both"
    missed = case_metrics(empty, blob)
    assert missed["dice"] == 0.0 and math.isnan(missed["hd95"]) and missed["empty"] == "prediction"
    false = case_metrics(blob, empty)
    assert false["jaccard"] == 0.0 and math.isnan(false["asd"]) and false["empty"] == "reference"


def test_summary_means_stds_and_counts_empty_cases():
    rows = [{"dice": 0.8, "jaccard": 0.7, "hd95": 4.0, "asd": 1.0, "assd": 1.0, "empty": ""},
            {"dice": 0.6, "jaccard": 0.5, "hd95": 6.0, "asd": 2.0, "assd": 2.0, "empty": ""},
            {"dice": 0.0, "jaccard": 0.0, "hd95": math.nan, "asd": math.nan, "assd": math.nan, "empty": "prediction"}]
    s = summarize(rows, "voxel")
    assert s["dice"] == pytest.approx(0.4667, abs=1e-4)
    assert s["hd95"] == 5.0 and s["hd95_std"] == 1.0
    assert s["n_cases"] == 3 and s["n_empty_prediction"] == 1 and s["distance_unit"] == "voxel"
