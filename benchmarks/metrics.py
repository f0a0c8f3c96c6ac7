"""Our evaluation metrics against medpy's on LA-sized cases: time and agreement, in one run.

    python benchmarks/metrics.py [--cases N] [--units voxel mm]

Cases: the real labels of the LA sample (``../shared/datasets/la-sample``, about 190x142x88
voxels, 0.625 mm) with a realistically perturbed prediction each
(:func:`cvcl.testing.perturb.perturbed_prediction`, seeded by the case's index: smooth
boundary displacement of about 2 voxels, a missed vein tip, a false-positive blob).

For every case and unit, ours (:func:`cvcl.evaluation.metrics.case_metrics`: Dice, Jaccard,
HD95, ASD, ASSD in one call) and medpy's ``dc``, ``jc``, ``hd95``, ``asd``, ``assd`` run one
after the other on the same masks; the figures must agree to 1e-9 relative. The speed-up is
medpy's total time over ours. ``speedup_vs_medpy`` compares the same five figures;
``speedup_vs_medpy_uamt_set`` compares with only the four that UA-MT's evaluation asks medpy
for (dc, jc, hd95, asd), which our one call also covers. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import h5py
import numpy as np
from medpy.metric import binary as mb

from cvcl.evaluation.metrics import case_metrics
from cvcl.testing.perturb import perturbed_prediction

LA_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "la-sample"
LA_SPACING = (0.625, 0.625, 0.625)
MEDPY = {
    "dice": lambda p, g, s: mb.dc(p, g),
    "jaccard": lambda p, g, s: mb.jc(p, g),
    "hd95": mb.hd95,
    "asd": mb.asd,
    "assd": mb.assd,
}
UAMT_SET = ("dice", "jaccard", "hd95", "asd")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=12, help="how many LA sample cases (sorted by id)")
    ap.add_argument("--units", nargs="+", choices=("voxel", "mm"), default=["voxel", "mm"])
    args = ap.parse_args()
    paths = sorted(LA_SAMPLE.glob("2018LA_Seg_Training Set/*/mri_norm2.h5"))[: args.cases]
    if not paths:
        raise SystemExit(f"error: no LA sample under {LA_SAMPLE}")

    ours_s = 0.0
    medpy_s = {name: 0.0 for name in MEDPY}
    worst_rel = 0.0
    voxels = []
    for i, path in enumerate(paths):
        with h5py.File(path, "r") as f:
            label = f["label"][()] > 0
        pred = perturbed_prediction(label, seed=i)
        voxels.append(label.size)
        for unit in args.units:
            spacing = LA_SPACING if unit == "mm" else None
            start = time.perf_counter()
            ours = case_metrics(pred, label, spacing)
            ours_s += time.perf_counter() - start
            for name, fn in MEDPY.items():
                start = time.perf_counter()
                value = float(fn(pred, label, spacing))
                medpy_s[name] += time.perf_counter() - start
                worst_rel = max(worst_rel, abs(ours[name] - value) / max(abs(value), 1e-300))
            print(
                f"{path.parent.name} {label.shape} {unit:>5}: dice {ours['dice']:.4f} hd95 {ours['hd95']:.3f} "
                f"asd {ours['asd']:.3f} assd {ours['assd']:.3f}"
            )

    medpy_all = sum(medpy_s.values())
    medpy_uamt = sum(medpy_s[n] for n in UAMT_SET)
    runs = len(paths) * len(args.units)
    machine = (
        f"{platform.processor() or platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    print(f"{runs} case evaluations ({len(paths)} LA cases x {', '.join(args.units)}), {machine}")
    print(
        f"ours {ours_s:.3f} s, medpy {medpy_all:.3f} s (dc+jc+hd95+asd+assd), "
        f"{medpy_uamt:.3f} s (dc+jc+hd95+asd); worst relative difference {worst_rel:.1e}"
    )
    if worst_rel > 1e-9:
        raise SystemExit(f"error: ours differs from medpy by {worst_rel:.2e} relative (> 1e-9)")
    print(
        json.dumps(
            {
                "cases": len(paths),
                "units": args.units,
                "evaluations": runs,
                "mean_voxels": float(np.mean(voxels)),
                "machine": machine,
                "ours_seconds": ours_s,
                "medpy_seconds": medpy_all,
                "medpy_seconds_by_metric": medpy_s,
                "max_relative_difference": worst_rel,
                "speedup_vs_medpy": medpy_all / ours_s,
                "speedup_vs_medpy_uamt_set": medpy_uamt / ours_s,
            }
        )
    )


if __name__ == "__main__":
    main()
