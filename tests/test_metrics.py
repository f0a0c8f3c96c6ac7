"""Our metrics equal medpy's (to 1e-9 relative) on hundreds of seeded random cases, and the
empty-mask policy does what docs/evaluation.md says."""

import math

import h5py
import numpy as np
import pytest
from medpy.metric import binary as mb
from scipy import ndimage as ndi

from cvcl.evaluation import metrics as metrics_module
from cvcl.evaluation.metrics import METRICS, case_metrics, surface, surface_distances
from cvcl.evaluation.report import format_table
from cvcl.evaluation.summary import summarize
from cvcl.regions import bounding_box
from cvcl.testing.perturb import perturbed_prediction
from tests.conftest import LA_SAMPLE, ball

MEDPY_SURFACE_DISTANCES = mb.__dict__["__surface_distances"]  # module-private in medpy
REL, ABS = 1e-9, 1e-12


def medpy_metrics(pred, ref, spacing=None):
    return {
        "dice": mb.dc(pred, ref),
        "jaccard": mb.jc(pred, ref),
        "hd95": mb.hd95(pred, ref, spacing),
        "asd": mb.asd(pred, ref, spacing),
        "assd": mb.assd(pred, ref, spacing),
    }


# -- seeded random cases ---------------------------------------------------------------------


def _ellipsoids(rng, shape, n, centre_range=None, radius=(1.5, 8.0)):
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    mask = np.zeros(shape, bool)
    for _ in range(n):
        lo, hi = centre_range if centre_range is not None else (np.zeros(3), np.array(shape) - 1)
        centre = rng.uniform(lo, hi)
        radii = rng.uniform(*radius, size=3)
        mask |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1
    return mask


def _spacing(rng):
    kind = rng.integers(4)
    if kind == 0:
        return None
    if kind == 1:
        return (0.625, 0.625, 0.625)
    if kind == 2:
        return tuple(float(v) for v in rng.choice([0.5, 1.0, 2.5, 3.0], size=3))  # repeated anisotropy
    return tuple(float(v) for v in rng.uniform(0.3, 3.0, size=3))


def _non_empty(rng, mask):
    if not mask.any():
        mask[tuple(rng.integers(0, s) for s in mask.shape)] = True
    return mask


def blobs(rng):
    shape = tuple(rng.integers(12, 36, size=3))
    ref = _ellipsoids(rng, shape, rng.integers(1, 4))
    if rng.random() < 0.5:  # an eroded/dilated, shifted, speckled version of the reference
        pred = (
            ndi.binary_dilation(ref, iterations=int(rng.integers(1, 3)))
            if rng.random() < 0.5
            else ndi.binary_erosion(ref, iterations=1)
        )
        pred = np.roll(pred, tuple(rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
        pred ^= rng.random(shape) < 0.01
    else:
        pred = _ellipsoids(rng, shape, rng.integers(1, 4))
    return pred, ref


def thin(rng):
    """One-voxel planes, lines and shells: every voxel is surface; some volumes are flat."""
    shape = [int(v) for v in rng.integers(8, 30, size=3)]
    if rng.random() < 0.3:
        shape[rng.integers(3)] = int(rng.integers(1, 3))  # a flat volume
    shape = tuple(shape)
    masks = []
    for _ in range(2):
        m = np.zeros(shape, bool)
        kind = rng.integers(3)
        axis = rng.integers(3)
        idx = [slice(None)] * 3
        if kind == 0:  # a (partial) plane
            idx[axis] = rng.integers(0, shape[axis])
            m[tuple(idx)] = True
            m &= rng.random(shape) < 0.9
        elif kind == 1:  # a line along an axis, or a diagonal
            if rng.random() < 0.5:
                others = [a for a in range(3) if a != axis]
                for a in others:
                    idx[a] = rng.integers(0, shape[a])
                m[tuple(idx)] = True
            else:
                n = min(shape)
                start = [rng.integers(0, s - n + 1) for s in shape]
                for k in range(n):
                    m[start[0] + k, start[1] + k, start[2] + k] = True
        else:  # a thin shell
            b = _ellipsoids(rng, shape, 1, radius=(3.0, 10.0))
            m = b ^ ndi.binary_erosion(b)
        masks.append(_non_empty(rng, m))
    return masks[0], masks[1]


def tiny(rng):
    """Single voxels and 2-3 voxel objects, sometimes the very same voxel."""
    shape = tuple(rng.integers(3, 20, size=3))
    masks = []
    for _ in range(2):
        m = np.zeros(shape, bool)
        for _ in range(rng.integers(1, 4)):
            m[tuple(rng.integers(0, s) for s in shape)] = True
        masks.append(m)
    if rng.random() < 0.25:
        masks[1] = masks[0].copy()
    return masks[0], masks[1]


def border(rng):
    """Objects cut by the volume's faces, edges and corners, up to the whole volume."""
    shape = tuple(rng.integers(8, 30, size=3))
    masks = []
    for _ in range(2):
        kind = rng.integers(3)
        if kind == 0:  # ellipsoids centred on or outside a face or a corner
            hi = np.array(shape, dtype=float)
            m = _ellipsoids(rng, shape, rng.integers(1, 3), centre_range=(-2 * np.ones(3), hi + 1), radius=(3, 12))
        elif kind == 1:  # a slab or box from the volume's edge
            m = np.zeros(shape, bool)
            lo = [0 if rng.random() < 0.5 else rng.integers(0, s) for s in shape]
            hi = [s if rng.random() < 0.5 else rng.integers(low + 1, s + 1) for low, s in zip(lo, shape, strict=True)]
            m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
        else:  # (almost) all of the volume
            m = rng.random(shape) < 0.995 if rng.random() < 0.5 else np.ones(shape, bool)
        masks.append(_non_empty(rng, m))
    return masks[0], masks[1]


def disjoint(rng):
    """Masks that do not overlap: opposite corners of a large, mostly empty volume."""
    shape = tuple(rng.integers(20, 48, size=3))
    a = _ellipsoids(rng, shape, 1, centre_range=(np.zeros(3), np.array(shape) * 0.25), radius=(1.0, 4.0))
    b = _ellipsoids(
        rng, shape, rng.integers(1, 3), centre_range=(np.array(shape) * 0.7, np.array(shape) - 1), radius=(1.0, 4.0)
    )
    b &= ~a
    return _non_empty(rng, a), _non_empty(rng, b)


def noise(rng):
    """Dense speckle: surfaces fill much of the box (the distance-transform route)."""
    shape = tuple(rng.integers(8, 24, size=3))
    return (
        _non_empty(rng, rng.random(shape) < rng.uniform(0.05, 0.6)),
        _non_empty(rng, rng.random(shape) < rng.uniform(0.05, 0.6)),
    )


CATEGORIES = {"blobs": blobs, "thin": thin, "tiny": tiny, "border": border, "disjoint": disjoint, "noise": noise}
N_PER_CATEGORY = 40  # 240 random cases in all


def random_case(category, index):
    rng = np.random.default_rng([index, list(CATEGORIES).index(category)])
    pred, ref = CATEGORIES[category](rng)
    if rng.random() < 0.5:
        pred, ref = ref, pred
    return pred, ref, _spacing(rng)


def assert_equal_to_medpy(pred, ref, spacing):
    ours = case_metrics(pred, ref, spacing)
    for name, value in medpy_metrics(pred, ref, spacing).items():
        assert ours[name] == pytest.approx(value, rel=REL, abs=ABS), (name, ours[name], value)
    expected = (MEDPY_SURFACE_DISTANCES(pred, ref, spacing), MEDPY_SURFACE_DISTANCES(ref, pred, spacing))
    for method in ("kdtree", "edt"):  # both routes, element by element and in medpy's order
        for got, want in zip(surface_distances(pred, ref, spacing, method=method), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=REL, atol=ABS)


@pytest.mark.parametrize("category", list(CATEGORIES))
@pytest.mark.parametrize("index", range(N_PER_CATEGORY))
def test_random_cases_equal_medpy(category, index):
    assert_equal_to_medpy(*random_case(category, index))


@pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="needs ../shared/datasets/la-sample")
@pytest.mark.parametrize("index,spacing", [(0, None), (1, (0.625, 0.625, 0.625)), (2, (0.625, 0.8, 2.5))])
def test_la_sized_cases_with_a_realistic_prediction_equal_medpy(index, spacing):
    path = sorted(LA_SAMPLE.glob("2018LA_Seg_Training Set/*/mri_norm2.h5"))[index]
    with h5py.File(path, "r") as f:
        label = f["label"][()] > 0
    pred = perturbed_prediction(label, seed=index)
    assert 0.8 < case_metrics(pred, label)["dice"] < 0.99  # a realistic error, not a copy
    ours = case_metrics(pred, label, spacing)
    for name, value in medpy_metrics(pred, label, spacing).items():
        assert ours[name] == pytest.approx(value, rel=REL, abs=ABS), name


def test_the_random_cases_cover_both_distance_routes_and_the_edge_cases(monkeypatch):
    """The generators reach what they claim to: the k-d tree and the distance-transform
    routes under ``auto``, volume borders, flat volumes, disjoint and identical masks."""
    routes = []
    real = metrics_module._nearest_offsets

    def spy(targets, queries, target_mask, spacing, use_tree):
        routes.append(use_tree)
        return real(targets, queries, target_mask, spacing, use_tree)

    monkeypatch.setattr(metrics_module, "_nearest_offsets", spy)
    seen = set()
    for category in CATEGORIES:
        for index in range(N_PER_CATEGORY):
            pred, ref, spacing = random_case(category, index)
            routes.clear()
            m = case_metrics(pred, ref, spacing)
            seen.add(("tree" if all(routes) else "edt") if routes else "no search")
            union = pred | ref
            if any(union.take(0, axis=a).any() or union.take(-1, axis=a).any() for a in range(3)):
                seen.add("border")
            if min(pred.shape) <= 2:
                seen.add("flat")
            if m["dice"] == 0:
                seen.add("disjoint")
            if np.array_equal(pred, ref):
                seen.add("identical")
            if spacing is not None and len(set(spacing)) > 1:
                seen.add("anisotropic")
    assert {"tree", "edt", "border", "flat", "disjoint", "identical", "anisotropic"} <= seen, seen


# -- the pieces ------------------------------------------------------------------------------


def test_surface_is_the_mask_minus_its_6_connected_erosion_with_background_outside():
    rng = np.random.default_rng(7)
    for _ in range(20):
        m = rng.random(tuple(rng.integers(1, 12, size=3))) < rng.uniform(0.2, 0.95)
        expected = m ^ ndi.binary_erosion(m, structure=ndi.generate_binary_structure(3, 1), border_value=0)
        np.testing.assert_array_equal(surface(m), expected)
    full = np.ones((4, 5, 6), bool)
    assert surface(full).sum() == full.sum() - 2 * 3 * 4  # only the outer layer


def test_bounding_box_is_tight_and_none_when_empty():
    m = np.zeros((10, 11, 12), bool)
    assert bounding_box(m) is None
    m[2, 3, 4] = m[5, 9, 4] = True
    assert bounding_box(m) == (slice(2, 6), slice(3, 10), slice(4, 5))


@pytest.mark.parametrize("spacing", [None, (0.8, 1.1, 2.5)])
def test_metrics_do_not_depend_on_where_the_objects_sit_in_the_volume(spacing):
    """Cropping is exact: padding the volume with background anywhere changes nothing, bit for bit."""
    ref = ball((20, 18, 14), (10, 9, 7), 6)
    pred = ball((20, 18, 14), (12, 8, 7), 5) | ball((20, 18, 14), (2, 2, 2), 1.5)
    base = case_metrics(pred, ref, spacing)
    for pad in [((0, 30), (5, 0), (0, 0)), ((17, 3), (0, 40), (9, 9))]:
        moved = case_metrics(np.pad(pred, pad), np.pad(ref, pad), spacing)
        assert moved == base


def test_identical_masks_have_zero_distances_and_unit_overlap():
    m = ball((16, 16, 16), (8, 8, 8), 5)
    assert case_metrics(m, m, (0.5, 1, 2)) == {
        "dice": 1.0,
        "jaccard": 1.0,
        "hd95": 0.0,
        "asd": 0.0,
        "assd": 0.0,
        "empty": "",
    }


def test_surface_distances_are_directional_and_in_medpys_order():
    ref = ball((30, 30, 30), (15, 15, 15), 6)
    pred = ref | ball((30, 30, 30), (26, 26, 26), 2)  # the reference plus a false-positive blob
    d_pg, d_gp = surface_distances(pred, ref)
    assert d_pg.max() > 10 and not d_gp.any()  # the blob is far from G; all of G's surface is P's
    np.testing.assert_array_equal(d_pg, MEDPY_SURFACE_DISTANCES(pred, ref))
    np.testing.assert_array_equal(d_gp, MEDPY_SURFACE_DISTANCES(ref, pred))


def test_scalar_spacing_equals_isotropic_and_bad_input_is_rejected():
    ref = ball((20, 20, 20), (10, 10, 10), 5)
    pred = ball((20, 20, 20), (11, 9, 10), 4)
    assert case_metrics(pred, ref, 0.625) == case_metrics(pred, ref, (0.625, 0.625, 0.625))
    assert case_metrics(pred.astype(np.uint8) * 255, ref.astype(np.float32)) == case_metrics(pred, ref)
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(pred, ref, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        case_metrics(pred[:-1], ref)
    with pytest.raises(ValueError, match="method"):
        surface_distances(pred, ref, method="fast")


# -- empty masks -----------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [None, (0.625, 0.625, 2.5)])
def test_empty_masks_follow_the_documented_policy(spacing):
    empty = np.zeros((10, 10, 10), bool)
    blob = ball((10, 10, 10), (5, 5, 5), 3)
    both = case_metrics(empty, empty, spacing)
    assert both == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0, "assd": 0.0, "empty": "both"}
    assert mb.jc(empty, empty) == 1.0  # medpy's own convention (its dc gives 0/0 = NaN)
    missed = case_metrics(empty, blob, spacing)
    false = case_metrics(blob, empty, spacing)
    assert missed["empty"] == "prediction" and false["empty"] == "reference"
    for row in (missed, false):
        assert row["dice"] == 0.0 and row["jaccard"] == 0.0
        assert all(math.isnan(row[k]) for k in ("hd95", "asd", "assd"))
    assert mb.dc(empty, blob) == 0.0
    with pytest.raises(RuntimeError):  # why a policy is needed at all
        mb.hd95(empty, blob)
    with pytest.raises(ValueError, match="empty"):
        surface_distances(empty, blob)


def _row(dice, hd95, empty=""):
    nan = math.nan
    if empty in ("prediction", "reference"):
        return {"dice": 0.0, "jaccard": 0.0, "hd95": nan, "asd": nan, "assd": nan, "empty": empty}
    return {"dice": dice, "jaccard": dice / (2 - dice), "hd95": hd95, "asd": hd95 / 4, "assd": hd95 / 4, "empty": empty}


def test_summary_means_stds_and_counts_empty_cases():
    rows = [
        _row(0.8, 4.0),
        _row(0.6, 6.0),
        _row(0, 0, "prediction"),
        _row(0, 0, "reference"),
        {**_row(1.0, 0.0), "empty": "both"},
    ]
    s = summarize(rows, "voxel")
    assert s["dice"] == pytest.approx(np.mean([0.8, 0.6, 0, 0, 1.0]))  # Dice counts every case
    assert s["dice_std"] == pytest.approx(np.std([0.8, 0.6, 0, 0, 1.0]))
    assert s["hd95"] == pytest.approx(np.mean([4.0, 6.0, 0.0]))  # undefined distances are left out
    assert s["hd95_std"] == pytest.approx(np.std([4.0, 6.0, 0.0]))
    assert (s["n_cases"], s["n_empty_prediction"], s["n_empty_reference"], s["n_empty_both"]) == (5, 1, 1, 1)
    assert s["n_distance_cases"] == 3 and s["distance_unit"] == "voxel"
    assert set(METRICS) | {f"{m}_std" for m in METRICS} <= set(s)


def test_summary_of_only_undefined_distances_is_nan_not_an_error():
    s = summarize([_row(0, 0, "prediction")], "mm")
    assert s["dice"] == 0.0 and math.isnan(s["hd95"]) and math.isnan(s["asd_std"])
    assert s["n_distance_cases"] == 0 and s["n_empty_prediction"] == 1


def test_table_names_the_unit_and_the_empty_cases():
    s = summarize([_row(0.8, 4.0), _row(0.6, 6.0), _row(0, 0, "prediction")], "mm")
    table = format_table(s)
    assert "HD95 (mm)" in table and "ASD (mm)" in table and "ASSD (mm)" in table
    assert "Dice (%)" in table and "46.67" in table
    assert "empty predictions: 1" in table and "3 test cases" in table
