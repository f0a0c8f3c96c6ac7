"""Overlay pictures: axial slices of an image with the ground-truth and predicted contours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvcl.io.atomic import atomic_path


def pick_cases(rows: list[dict], key: str = "dice") -> dict[str, dict]:
    """The best, median and worst rows by ``key`` (fewer when there are fewer rows)."""
    ordered = sorted(rows, key=lambda r: r[key])
    if not ordered:
        return {}
    picks = {"worst": ordered[0], "median": ordered[len(ordered) // 2], "best": ordered[-1]}
    seen, out = set(), {}
    for name in ("best", "median", "worst"):
        if picks[name]["case_id"] not in seen:
            seen.add(picks[name]["case_id"])
            out[name] = picks[name]
    return out


def axial_slices(label: np.ndarray, prediction: np.ndarray, count: int = 4) -> list[int]:
    """``count`` Z indices spread over the extent of the union of label and prediction."""
    union = (label > 0) | (prediction > 0)
    zs = np.flatnonzero(union.any(axis=(0, 1)))
    if len(zs) == 0:
        return list(np.linspace(0, label.shape[2] - 1, count).round().astype(int))
    return sorted(set(np.linspace(zs[0], zs[-1], count + 2)[1:-1].round().astype(int)))


def save_overlay(
    path: str | Path, image: np.ndarray, label: np.ndarray, prediction: np.ndarray, title: str, count: int = 4
) -> None:
    """Write a PNG of ``count`` axial slices: image in grey, ground truth green, prediction red.

    ``image`` is ``(X, Y, Z)`` (or ``(C, X, Y, Z)``: channel 0 is shown).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    image = image[0] if image.ndim == 4 else image
    zs = axial_slices(label, prediction, count)
    fig, axes = plt.subplots(1, len(zs), figsize=(3.2 * len(zs), 3.6), squeeze=False)
    lo, hi = np.percentile(image, [1, 99])
    for ax, z in zip(axes[0], zs, strict=True):
        ax.imshow(image[:, :, z].T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
        for mask, colour in ((label, "#33dd55"), (prediction, "#ff3333")):
            if mask[:, :, z].any():
                ax.contour(mask[:, :, z].T.astype(float), levels=[0.5], colors=colour, linewidths=1.2)
        ax.set_title(f"z = {z}", fontsize=9)
        ax.axis("off")
    handles = [
        Line2D([], [], color="#33dd55", label="ground truth"),
        Line2D([], [], color="#ff3333", label="prediction"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
