"""Has a batch-norm network learned its training batches' composition? Dice on random crops with
every BatchNorm normalising over batches of ``k`` crops, each from a different volume, and prints
one JSON line::

    python results/batch_coupling.py --checkpoint models/model.pt --processed data/processed \\
        --split data/splits/split.json [--sizes 1 2 4] [--draws 12]

For the labeled (training) cases and the validation cases, ``<cases>_k<k>`` is the mean Dice
(foreground, %) over ``--draws`` batches of ``k`` crops of the training patch, each crop centred
near a random foreground voxel. ``k = 1`` is what ``model.bn_statistics: window`` does at
inference (each window its own statistics). Dropout is off and the running statistics are left
as they were.

A network that scores its own training scans well only when they are normalised together (high
``labeled_k4``, low ``labeled_k1``) has tied its function to the batches it saw rather than to
the scans: what supervised training with all 4 labeled volumes in every batch does
(docs/results-la.md, "The joint tuning"). Validation and training cases only, never the test cases.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cvcl.io.volume import read_case
from cvcl.models.checkpoint import load_model
from cvcl.workspace import case_file, read_split

Volume = tuple[np.ndarray, np.ndarray]  # image (C, X, Y, Z), label (X, Y, Z)


def foreground_crop(volume: Volume, patch: Sequence[int], rng: np.random.Generator) -> Volume:
    """A ``patch``-sized crop of ``volume`` around a random foreground voxel (shifted by up to a
    quarter patch), inside the volume; the volume's centre when it has no foreground."""
    image, label = volume
    foreground = np.argwhere(label > 0)
    centre = foreground[rng.integers(len(foreground))] if len(foreground) else np.array(label.shape) // 2
    corner = [
        int(np.clip(c - p // 2 + rng.integers(-(p // 4), p // 4 + 1), 0, max(0, s - p)))
        for c, s, p in zip(centre, label.shape, patch, strict=True)
    ]
    box = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
    return image[(slice(None), *box)], label[box]


def batch_normalised(network: torch.nn.Module) -> None:
    """Eval mode (dropout off) with every BatchNorm normalising over the batch it is given and
    its running statistics frozen (momentum 0). In train mode the V-Net's BatchNorm normalises by
    the batch whatever its ``window_statistics``, which act at inference only."""
    network.eval()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.train(True)
            module.momentum = 0.0


def _dice(prediction: np.ndarray, label: np.ndarray) -> float:
    total = int((prediction == 1).sum() + (label == 1).sum())
    return 2.0 * int(((prediction == 1) & (label == 1)).sum()) / total if total else 1.0


@torch.no_grad()
def coupled_dice(
    network: torch.nn.Module, volumes: list[Volume], k: int, patch: Sequence[int], draws: int, seed: int = 0
) -> float:
    """Mean foreground Dice (%) over ``draws`` batches of ``k`` crops from ``k`` different volumes."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        chosen = rng.choice(len(volumes), size=min(k, len(volumes)), replace=False)
        crops = [foreground_crop(volumes[i], patch, rng) for i in chosen]
        logits = network(torch.from_numpy(np.stack([c[0] for c in crops])).float()).logits
        scores += [_dice(p, c[1]) for p, c in zip(logits.argmax(1).numpy(), crops, strict=True)]
    return 100.0 * float(np.mean(scores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="models/model.pt of a batch-norm run")
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--split", type=Path, default=Path("data/splits/split.json"))
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 64, 32), help="the training patch, voxels")
    parser.add_argument("--sizes", type=int, nargs="+", default=(1, 2, 4), help="crops per batch")
    parser.add_argument("--draws", type=int, default=12, help="batches per size")
    args = parser.parse_args(argv)

    network, meta = load_model(args.checkpoint)
    batch_normalised(network)
    split = read_split(args.split)
    result: dict[str, object] = {"checkpoint": str(args.checkpoint), "norm": meta["model_config"]["norm"]}
    for name in ("labeled", "val"):
        volumes = []
        for case_id in split[name]:
            case = read_case(case_file(case_id, args.processed))
            volumes.append((case.image, case.label))
        for k in args.sizes:
            result[f"{name}_k{k}"] = round(coupled_dice(network, volumes, k, args.patch, args.draws), 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
