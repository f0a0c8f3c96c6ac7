"""A seeded generator of BraTS-like multi-modal brain MRI with a glioma (``synthetic-brats``).

Anatomy comes from a real template, not from geometry: nilearn's packaged MNI152 2009 T1 and its
grey-matter, white-matter and brain-mask maps (offline; kept on a 2 mm grid). Per case the template is warped by
a random similarity transform plus a smooth displacement field and resampled to
``download.synthetic_brats.spacing`` mm; CSF is the brain minus grey and white matter.

A tumour is grown in the white matter: an enhancing rim (label 4) around a necrotic core
(label 1) inside a larger, irregular oedema (label 2) that follows the white matter; a quarter of
the cases are "low grade": a non-enhancing core (label 1) without rim. Four modalities get their
textbook contrasts (relative to white matter):

=========  =====  =====  =====  =====  ======  ===========  ========
modality   CSF    GM     WM     oedema necrosis enhancing    LGG core
=========  =====  =====  =====  =====  ======  ===========  ========
FLAIR      dark   mid    lower  bright mid      bright       bright
T1         dark   mid    bright low    dark     low          low
T1ce       dark   mid    bright low    dark     very bright  low
T2         bright mid    low    bright bright   bright       bright
=========  =====  =====  =====  =====  ======  ===========  ========

then a smooth bias field, Rician noise, and BraTS's skull stripping: every voxel outside the
brain is exactly 0. Raw form written (BraTS 2019's own layout, so the ``brats2019`` converter reads
it)::

    <out>/HGG/<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz    (LGG/ for the low-grade cases)
    <out>/train.list, val.list, test.list, protocol.json
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from tqdm import tqdm

from cvcl.datasets.synthetic_brats import SyntheticBraTSConfig
from cvcl.io.volume import int3, write_nifti
from cvcl.sources import protocol
from cvcl.sources.layouts import BRATS_MODALITIES, BRATS_SEG
from cvcl.sources.synthetic import random_rotation, smooth_field

TEMPLATE_SPACING = 2.0  # mm: the grid the template maps are kept on (load_template)

# tissue -> modality intensity relative to white matter in T1 (columns: flair, t1, t1ce, t2)
CONTRAST = {
    "csf": (0.20, 0.30, 0.30, 1.60),
    "gm": (0.85, 0.72, 0.74, 0.95),
    "wm": (0.68, 1.00, 1.00, 0.70),
    "oedema": (1.45, 0.68, 0.70, 1.35),
    "necrosis": (0.80, 0.42, 0.46, 1.55),
    "enhancing": (1.15, 0.78, 1.70, 1.10),
    "lgg_core": (1.30, 0.58, 0.60, 1.45),
}


def case_ids(cfg: SyntheticBraTSConfig) -> dict[str, list[str]]:
    """Case ids per subset (``train``, ``val``, ``test``), in list order."""
    ids = [f"synbrats_{i:03d}" for i in range(cfg.n_train + cfg.n_val + cfg.n_test)]
    lists = {
        "train": ids[: cfg.n_train],
        "val": ids[cfg.n_train : cfg.n_train + cfg.n_val],
        "test": ids[cfg.n_train + cfg.n_val :],
    }
    return {k: v for k, v in lists.items() if v}


@dataclass(frozen=True)
class Template:
    """The MNI152 maps on their 2 mm grid: T1 intensity, GM/WM probabilities, brain mask."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    affine: np.ndarray


def _halve(volume: np.ndarray) -> np.ndarray:
    """2x2x2 block means: the 1 mm template on a 2 mm grid (an odd last row is dropped)."""
    x, y, z = (s // 2 * 2 for s in volume.shape)
    v = volume[:x, :y, :z]
    return v.reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """nilearn's packaged MNI152 2009 maps (no download) on a 2 mm grid, as float32 arrays.

    The packaged files are 1 mm; block-averaging them is faster than nilearn's own resampling
    to 2 mm and is an anti-aliased downsampling.
    """
    from nilearn import datasets  # heavy import: only when the generator runs

    def get(loader) -> np.ndarray:
        return _halve(np.asarray(loader(resolution=1).get_fdata(), dtype=np.float32))

    t1 = datasets.load_mni152_template(resolution=1)
    affine = np.asarray(t1.affine, dtype=np.float64) @ np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (np.asarray(t1.affine) @ [0.5, 0.5, 0.5, 1.0])[:3]  # centre of the first 2x2x2 block
    return Template(
        _halve(np.asarray(t1.get_fdata(), dtype=np.float32)),
        get(datasets.load_mni152_gm_template),
        get(datasets.load_mni152_wm_template),
        get(datasets.load_mni152_brain_mask),
        affine,
    )


def case_grid(cfg: SyntheticBraTSConfig, template: Template) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and RAS affine of the output grid: the template's field of view at ``cfg.spacing``."""
    extent = np.asarray(template.t1.shape) * TEMPLATE_SPACING
    shape = int3(int(round(e / cfg.spacing)) for e in extent)
    affine = template.affine.copy()
    affine[:3, :3] = np.diag([cfg.spacing] * 3)
    return shape, affine


def _warp(
    template: Template, shape: tuple[int, int, int], spacing: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The template maps resampled onto the case grid through a random smooth deformation."""
    centre = np.asarray(template.t1.shape) * TEMPLATE_SPACING / 2  # mm, in template voxel frame
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) * spacing for s in shape], indexing="ij"))
    rot = random_rotation(rng, (6, 6, 8))
    scale = rng.uniform(0.92, 1.08, 3)
    shift = rng.uniform(-4, 4, 3)
    local = grid - (centre + shift)[:, None, None, None]
    src = np.einsum("ij,j...->i...", (rot / scale[None, :]).T, local) + centre[:, None, None, None]
    amplitude = rng.uniform(2.0, 4.0)  # mm of smooth, anatomy-like variation
    for a in range(3):
        src[a] += amplitude * smooth_field(rng, shape, 3)
    coords = src / TEMPLATE_SPACING
    maps = {}
    for name in ("t1", "gm", "wm", "brain"):
        maps[name] = ndi.map_coordinates(getattr(template, name), coords, order=1, mode="constant", cval=0.0)
    return maps


def _tumour(
    maps: dict[str, np.ndarray], brain: np.ndarray, spacing: float, rng: np.random.Generator, high_grade: bool
) -> np.ndarray:
    """BraTS labels (0, 1, 2, 4) of a tumour grown in the white matter of ``brain``."""
    shape = brain.shape
    depth = ndi.distance_transform_edt(brain) * spacing  # mm from the brain's surface
    r_core = rng.uniform(9.0, 18.0)  # mm: cores of about 3 to 25 ml
    r_oedema = r_core + rng.uniform(10.0, 25.0)
    seeds = np.argwhere((maps["wm"] > 0.5) & (depth > r_core + 6.0))
    if len(seeds) == 0:
        seeds = np.argwhere(depth >= depth.max() * 0.8)
    centre = seeds[rng.integers(len(seeds))].astype(np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    offset = (grid - centre[:, None, None, None]) * spacing
    rot = random_rotation(rng, (40, 40, 40))
    local = np.einsum("ij,j...->i...", rot.T, offset)

    def blob(radius: float, aspect: np.ndarray, rough: float) -> np.ndarray:
        r = np.sqrt(np.sum((local / (radius * aspect)[:, None, None, None]) ** 2, axis=0))
        return r < 1.0 + rough * smooth_field(rng, shape, 4)

    aspect = rng.uniform(0.8, 1.2, 3)
    core = blob(r_core, aspect, 0.15) & brain
    oedema = blob(r_oedema, rng.uniform(0.7, 1.3, 3), 0.35) & brain
    oedema &= (maps["wm"] + 0.3 * maps["gm"] > 0.3) | ndi.binary_dilation(core, iterations=2)
    seg = np.zeros(shape, np.uint8)
    seg[oedema] = 2
    if high_grade:
        rim = max(1, int(round(rng.uniform(2.0, 4.5) / spacing)))
        necrosis = ndi.binary_erosion(core, iterations=rim)
        seg[core] = 4
        seg[necrosis] = 1
    else:
        seg[core] = 1
    return seg


def generate_case(index: int, cfg: SyntheticBraTSConfig) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Case ``index``: ``({modality: int16 (X, Y, Z)}, seg uint8 (X, Y, Z), RAS affine)``.

    Deterministic in ``(cfg.seed, index)``. Low grade (no enhancing rim) for a quarter of cases.
    """
    template = load_template()
    shape, affine = case_grid(cfg, template)
    rng = np.random.default_rng([cfg.seed, index])
    maps = _warp(template, shape, cfg.spacing, rng)
    brain = maps["brain"] > 0.5
    gm = np.clip(maps["gm"], 0, 1) * brain
    wm = np.clip(maps["wm"], 0, 1) * brain
    csf = np.clip(1.0 - gm - wm, 0, 1) * brain
    high_grade = rng.uniform() >= 0.25
    seg = _tumour(maps, brain, cfg.spacing, rng, high_grade)
    # template texture: the real T1's deviation from its own tissue model, shared by all modalities
    wm_level = float(np.median(maps["t1"][wm > 0.9])) if (wm > 0.9).any() else 1.0
    texture = np.clip(maps["t1"] / max(wm_level, 1e-6) - (0.3 * csf + 0.72 * gm + wm), -0.3, 0.3)
    tumour_parts = {
        "oedema": seg == 2,
        "necrosis": (seg == 1) & high_grade,
        "enhancing": seg == 4,
        "lgg_core": (seg == 1) & (not high_grade),
    }
    images = {}
    for m, modality in enumerate(BRATS_MODALITIES):
        jitter = {t: c[m] * rng.uniform(0.94, 1.06) for t, c in CONTRAST.items()}
        image = jitter["csf"] * csf + jitter["gm"] * gm + jitter["wm"] * wm
        image += (0.5 if modality == "t1" or modality == "t1ce" else 0.25) * texture
        for part, mask in tumour_parts.items():
            if mask.any():
                soft = ndi.gaussian_filter(mask.astype(np.float32), 0.6)
                value = jitter[part] * (1 + 0.06 * smooth_field(rng, shape, 6))
                image = (1 - soft) * image + soft * value
        image *= np.exp(0.12 * smooth_field(rng, shape, 2))  # coil bias field
        sigma = rng.uniform(0.02, 0.04)
        image = np.sqrt((image + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)
        scaled = np.clip(np.round(image * rng.uniform(300, 600)), 1, 32767)  # brain voxels stay > 0
        images[modality] = np.where(brain, scaled, 0).astype(np.int16)
    return images, seg * brain.astype(np.uint8), affine


def write_raw(cfg: SyntheticBraTSConfig, out: Path, *, progress: bool = True) -> dict:
    """Write the whole dataset in BraTS's layout into ``out`` (which must exist)."""
    lists = case_ids(cfg)
    ids = [c for subset in ("train", "val", "test") for c in lists.get(subset, [])]
    for index, case_id in enumerate(tqdm(ids, desc="generate synthetic-brats", unit="case", disable=not progress)):
        images, seg, affine = generate_case(index, cfg)
        folder = out / ("HGG" if (seg == 4).any() else "LGG") / case_id
        folder.mkdir(parents=True, exist_ok=True)
        for modality, image in images.items():
            write_nifti(folder / f"{case_id}_{modality}.nii.gz", image, affine)
        write_nifti(folder / f"{case_id}_{BRATS_SEG}.nii.gz", seg, affine)
    return protocol.write(out, "synthetic-brats", protocol.CaseLists("generator", "the generator's lists", lists))
