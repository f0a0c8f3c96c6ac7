"""A seeded generator of left-atrium-like LGE-MRI volumes (the offline default dataset).

Each case has a chamber of random shape (a smoothly deformed, rotated ellipsoid), 2 to 4
tubular pulmonary veins and an appendage; that union is the label. The blood pool is bright
and enclosed by a darker wall with patchy enhancement (LGE "scar"), and beside it lie bright
structures of similar intensity that are *not* the atrium (ventricle, aorta, right heart), so
an intensity threshold alone segments them too and scores poorly. A smooth multiplicative
bias field and Rician noise finish the image. Sizes scale with the volume shape, so a small
shape gives a small, fast demo and a large one an LA-sized volume.

Raw form written by :func:`write_raw` (nnU-Net's raw convention plus LA-style lists)::

    <out>/dataset.json
    <out>/imagesTr/<case>_0000.nii.gz     float32 image
    <out>/labelsTr/<case>.nii.gz          uint8 label, 1 = atrium
    <out>/train.list, <out>/test.list     case ids, one a line
    <out>/protocol.json                   the generator's lists (cvcl.sources.protocol)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from cvcl.datasets.synthetic_la import SyntheticLAConfig
from cvcl.io.volume import int3, write_nifti
from cvcl.sources import protocol
from cvcl.sources.synthetic import random_rotation, smooth_field


def case_ids(cfg: SyntheticLAConfig) -> tuple[list[str], list[str]]:
    """Training and test case ids, in list order."""
    ids = [f"synla_{i:03d}" for i in range(cfg.n_train + cfg.n_test)]
    return ids[: cfg.n_train], ids[cfg.n_train :]


def case_affine(cfg: SyntheticLAConfig) -> np.ndarray:
    """Voxel-to-world matrix: radiological x and y flips and an off-centre origin, as scanners write."""
    sx, sy, sz = cfg.spacing
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = [sx * cfg.shape[0] / 2, sy * cfg.shape[1] / 2, -sz * cfg.shape[2] / 3]
    return affine


# -- shape primitives ---------------------------------------------------------------------
def _ellipsoid(
    grid: np.ndarray,
    centre: np.ndarray,
    radii: np.ndarray,
    rot: np.ndarray,
    deform: np.ndarray | None = None,
    amount: float = 0.0,
) -> np.ndarray:
    """Mask of a rotated ellipsoid; ``deform`` (a smooth field) bends its surface by ``amount``."""
    local = np.einsum("ij,j...->i...", rot.T, grid - centre[:, None, None, None])
    r = np.sqrt(np.sum((local / radii[:, None, None, None]) ** 2, axis=0))
    limit = 1.0 + (amount * deform if deform is not None else 0.0)
    return r < limit


def _tube(shape: tuple[int, int, int], points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Mask of a tube swept by spheres of ``radii`` centred on ``points`` (``(K, 3)`` voxels)."""
    mask = np.zeros(shape, dtype=bool)
    for p, r in zip(points, radii, strict=True):
        lo = np.maximum(np.floor(p - r).astype(int), 0)
        hi = np.minimum(np.ceil(p + r).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        sub = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d2 = (sub[0] - p[0]) ** 2 + (sub[1] - p[1]) ** 2 + (sub[2] - p[2]) ** 2
        mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] |= d2 <= r * r
    return mask


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-8)


# -- one case -----------------------------------------------------------------------------
def generate_case(index: int, cfg: SyntheticLAConfig) -> tuple[np.ndarray, np.ndarray]:
    """Generate case ``index``: image float32 ``(X, Y, Z)`` and label uint8 ``(X, Y, Z)``.

    Deterministic in ``(cfg.seed, index)``.
    """
    rng = np.random.default_rng([cfg.seed, index])
    shape = int3(cfg.shape)
    extent = np.asarray(shape, dtype=float)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))

    # Atrium: the crop of the real release centres the atrium, so do we (with jitter).
    centre = extent / 2 + rng.uniform(-0.06, 0.06, 3) * extent
    radii = rng.uniform(0.16, 0.22, 3) * extent
    rot = random_rotation(rng, (15, 15, 35))
    chamber = _ellipsoid(grid, centre, radii, rot, smooth_field(rng, shape, 3), 0.14)

    # Pulmonary veins leave the posterior wall, left and right, upper and lower.
    n_veins = int(rng.integers(2, 5))
    slots = rng.permutation([(-1, -1), (-1, 1), (1, -1), (1, 1)])[:n_veins]
    veins = np.zeros(shape, dtype=bool)
    for side, level in slots:
        d_local = _unit(np.array([0.65 * side, -0.75, 0.35 * level]) + rng.normal(0, 0.12, 3))
        d = rot @ d_local
        start = centre + d * 0.7 * float(np.linalg.norm(radii * d_local))
        length = rng.uniform(0.18, 0.30) * extent.mean()
        bend = rot @ _unit(rng.normal(0, 1, 3)) * rng.uniform(0.1, 0.3) * length
        pts = _bezier(start, start + d * length / 2 + bend, start + d * length, 28)
        r0 = rng.uniform(0.045, 0.065) * extent.mean()
        veins |= _tube(shape, pts, np.linspace(r0, 0.7 * r0, len(pts)))

    # Appendage: a lobe on a narrow neck, anterior and lateral.
    d_local = _unit(np.array([rng.choice([-1, 1]) * 0.7, 0.7, rng.uniform(-0.2, 0.4)]))
    d = rot @ d_local
    surface = centre + d * float(np.linalg.norm(radii * d_local))
    neck = _tube(shape, _bezier(surface - 2 * d, surface + d, surface + 3 * d, 8), np.full(8, 0.03 * extent.min()))
    lobe = _ellipsoid(
        grid,
        surface + d * rng.uniform(4, 6) * extent.min() / 72,
        rng.uniform(0.05, 0.08, 3) * extent,
        random_rotation(rng, (40, 40, 40)),
    )
    label = chamber | veins | neck | lobe

    # Wall: a dark shell with patchy enhancement.
    thickness = max(1, int(round(0.03 * extent.mean())))
    shell = ndi.binary_dilation(label, iterations=thickness) & ~label
    keep_out = ndi.binary_dilation(label, iterations=thickness + 1)

    # Bright neighbours of blood-pool intensity that are not the atrium.
    distractors = np.zeros(shape, dtype=bool)
    offsets = {
        "ventricle": np.array([0.55, 0.75, -0.7]),
        "right_heart": np.array([-1.0, 0.4, -0.1]),
        "aorta": np.array([0.2, 0.9, 0.3]),
        "descending_aorta": np.array([0.1, -1.2, 0.0]),
    }
    for name in rng.permutation(list(offsets))[: int(rng.integers(2, 4))]:
        direction = rot @ _unit(offsets[name] + rng.normal(0, 0.1, 3))
        if name.endswith("aorta"):
            r = rng.uniform(0.08, 0.12) * extent.mean()
            base = centre + direction * (float(np.linalg.norm(radii)) * 0.75 + r)
            axis = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.2, 3)
            pts = _bezier(base - axis * extent[2], base + rng.normal(0, 3, 3), base + axis * extent[2], 40)
            part = _tube(shape, pts, np.full(len(pts), r))
        else:
            scale = rng.uniform(0.9, 1.4)
            part_radii = radii * scale * rng.uniform(0.85, 1.15, 3)
            part_centre = centre + direction * float(np.linalg.norm(radii + part_radii)) * 0.55
            part = _ellipsoid(
                grid, part_centre, part_radii, random_rotation(rng, (30, 30, 30)), smooth_field(rng, shape, 3), 0.1
            )
        distractors |= part & ~keep_out

    # Intensities (arbitrary units, roughly 0..1 before bias and noise).
    blood = rng.uniform(0.68, 0.9)
    tissue = rng.uniform(0.3, 0.42)
    image = tissue + 0.05 * smooth_field(rng, shape, 8)
    lung = (smooth_field(rng, shape, 2) > 0.9) & ~ndi.binary_dilation(label | distractors, iterations=4)
    image[lung] = 0.08
    image[distractors] = blood * rng.uniform(0.92, 1.08)
    image[label] = blood + 0.03 * smooth_field(rng, shape, 6)[label]
    scar = smooth_field(rng, shape, 6) > rng.uniform(0.8, 1.4)
    image[shell] = np.where(scar[shell], 0.85 * blood, rng.uniform(0.16, 0.26))

    image = ndi.gaussian_filter(image, 0.7)
    image *= np.exp(rng.uniform(0.12, 0.3) * smooth_field(rng, shape, 2))
    sigma = rng.uniform(0.03, 0.07)
    noisy = np.sqrt((image + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)
    return (noisy * 1000).astype(np.float32), label.astype(np.uint8)


def generate_dataset(out_dir: str | Path, cfg: SyntheticLAConfig, *, progress: bool = True) -> None:
    """Write the whole dataset in its raw form into ``out_dir`` (which must exist)."""
    out = Path(out_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    train, test = case_ids(cfg)
    affine = case_affine(cfg)
    for index, case_id in enumerate(
        tqdm(train + test, desc="generate synthetic-la", unit="case", disable=not progress)
    ):
        image, label = generate_case(index, cfg)
        write_nifti(out / "imagesTr" / f"{case_id}_0000.nii.gz", image, affine)
        write_nifti(out / "labelsTr" / f"{case_id}.nii.gz", label, affine)
    (out / "train.list").write_text("\n".join(train) + "\n")
    (out / "test.list").write_text("\n".join(test) + "\n")
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "name": "synthetic-la",
                # the generator's module when the data were first published: kept, so data/raw stays the same
                "description": "Procedural LA-like LGE-MRI volumes (cvcl.sources.synthetic_la)",
                "channel_names": {"0": "LGE-MRI"},
                "labels": {"background": 0, "left_atrium": 1},
                "numTraining": len(train) + len(test),
                "file_ending": ".nii.gz",
                "generator": {"seed": cfg.seed, "shape": list(cfg.shape), "spacing": list(cfg.spacing)},
            },
            indent=2,
        )
        + "\n"
    )


def write_raw(cfg: SyntheticLAConfig, out: Path, *, progress: bool = True) -> dict:
    """Generate the dataset into ``out`` (which must exist) with its ``protocol.json``; returns
    the protocol record."""
    generate_dataset(out, cfg, progress=progress)
    train, test = case_ids(cfg)
    lists = protocol.CaseLists("generator", "the generator's lists", {"train": train, "test": test})
    return protocol.write(out, "synthetic-la", lists)
