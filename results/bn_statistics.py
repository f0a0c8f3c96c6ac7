"""Is a batch-norm network's validation Dice lost to its running statistics? Scores one checkpoint
on the validation cases four ways and prints one JSON line::

    python results/bn_statistics.py --checkpoint models/model.pt --processed data/processed \\
        --split data/splits/split.json [--crops labeled|all] [--batches 50]

- ``running``: as trained and as the pipeline validates (eval mode: the running mean and
  variance that BatchNorm averaged over training batches, momentum 0.1);
- ``re_estimated``: the same weights, with the statistics recomputed as a plain average over
  ``--batches`` batches of random training crops (the training patch, 4 crops per batch, from the
  labeled cases or from all training cases), dropout off ("precise BN");
- ``batch``: every batch of two windows normalised by its own statistics (BatchNorm in train
  mode, dropout off), which needs no running statistics at all;
- ``window``: every window normalised by its own statistics, what ``model.bn_statistics:
  window`` does at inference (:class:`cvcl.models.vnet.BatchNorm`).

If ``re_estimated`` is far above ``running``, the weights are fine and the running averages are
what fails at small batches (docs/results-la.md, issue 27). Validation cases only: nothing here
looks at the test cases.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cvcl.evaluation.scoring import ScoringCase
from cvcl.io.volume import read_case
from cvcl.models.checkpoint import load_model
from cvcl.models.vnet import set_bn_statistics
from cvcl.training.validation import mean_dice, validation_cases, validation_window
from cvcl.workspace import case_file, read_split

BN = (torch.nn.BatchNorm3d,)


def _mode(network: torch.nn.Module, bn_train: bool) -> None:
    """Eval mode (dropout off), with the BatchNorm layers in train mode when ``bn_train``."""
    network.eval()
    for module in network.modules():
        if isinstance(module, BN):
            module.train(bn_train)


def _score(network: torch.nn.Module, cases: list[ScoringCase], patch: Sequence[int], bn_train: bool) -> float:
    """Mean validation Dice as the pipeline validates (:mod:`cvcl.training.validation`), with the
    BatchNorm layers in train mode when ``bn_train``."""
    _mode(network, bn_train)
    return mean_dice(network, cases, validation_window(patch), torch.device("cpu"))


@torch.no_grad()
def re_estimate(network: torch.nn.Module, images: list[np.ndarray], patch: Sequence[int], batches: int) -> None:
    """Recompute every BatchNorm's running mean and variance as the plain average over
    ``batches`` batches of 4 random crops of ``images`` (``(C, X, Y, Z)`` each)."""
    rng = np.random.default_rng(0)
    for module in network.modules():
        if isinstance(module, BN):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average, not an exponential one
    _mode(network, bn_train=True)
    for _ in range(batches):
        crops = []
        for image in (images[i] for i in rng.integers(len(images), size=4)):
            corner = [int(rng.integers(0, max(1, s - p + 1))) for s, p in zip(image.shape[1:], patch, strict=True)]
            box = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
            crops.append(image[(slice(None), *box)])
        network(torch.from_numpy(np.stack(crops)).float())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="models/model.pt of a batch-norm run")
    parser.add_argument("--processed", type=Path, default=Path("data/processed"))
    parser.add_argument("--split", type=Path, default=Path("data/splits/split.json"))
    parser.add_argument("--iteration", choices=("chosen", "last"), default="chosen")
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 64, 32), help="the training patch, voxels")
    parser.add_argument("--crops", choices=("labeled", "all"), default="labeled", help="the cases crops come from")
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    network, meta = load_model(args.checkpoint, iteration=args.iteration)
    split = read_split(args.split)
    cases = validation_cases(args.processed, split["val"])
    ids = split["labeled"] + (split["unlabeled"] if args.crops == "all" else [])
    images = [read_case(case_file(c, args.processed)).image for c in ids]
    result = {"checkpoint": str(args.checkpoint), "iteration": args.iteration, "norm": meta["model_config"]["norm"]}
    # a checkpoint trained with model.bn_statistics: window loads in window mode: set each way explicitly
    set_bn_statistics(network, "running")
    result["running"] = _score(network, cases, args.patch, bn_train=False)
    result["batch"] = _score(network, cases, args.patch, bn_train=True)
    set_bn_statistics(network, "window")
    result["window"] = _score(network, cases, args.patch, bn_train=False)
    set_bn_statistics(network, "running")
    re_estimate(network, images, args.patch, args.batches)
    result["re_estimated"] = _score(network, cases, args.patch, bn_train=False)
    result.update(crops=args.crops, batches=args.batches, val_cases=len(cases))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
