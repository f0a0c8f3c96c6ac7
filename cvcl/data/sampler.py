"""Batch samplers mixing labeled and unlabeled cases."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def _cycle(indices: Sequence[int], rng: np.random.Generator) -> Iterator[int]:
    """Yield ``indices`` forever, reshuffled on every pass (each appears once per pass)."""
    indices = list(indices)
    while True:
        for i in rng.permutation(len(indices)):
            yield indices[i]


class TwoStreamBatchSampler(Sampler):
    """Batches of ``labeled_bs`` labeled plus ``batch_size - labeled_bs`` unlabeled samples.

    Both streams are shuffled passes over their indices; the labeled stream visits every
    labeled case once per pass, the unlabeled stream cycles independently. Each element is
    ``(index, seed)``: the seed drives that sample's augmentation, so batches are identical
    whatever the number of loader workers. ``num_batches`` bounds the iteration (the trainer
    counts iterations, not epochs); ``start`` skips the first batches without loading them
    (a resumed training gets exactly the batches the interrupted one would have).

    Common random numbers: the labeled cases' order and augmentation seeds and the unlabeled
    ones' come from four generators spawned from ``seed``, none of which the other stream
    touches. So at one seed every method (supervised, with no unlabeled stream at all, mean
    teacher, CVCL, ...) trains on the same labeled crops in the same order, and a paired
    difference between methods is not blurred by different labeled batches.
    """

    def __init__(
        self,
        labeled: Sequence[int],
        unlabeled: Sequence[int],
        batch_size: int,
        labeled_bs: int,
        num_batches: int,
        seed: int = 0,
        start: int = 0,
    ) -> None:
        if not 0 < labeled_bs <= batch_size:
            raise ValueError(f"labeled_bs must be in [1, batch_size], got {labeled_bs} of {batch_size}")
        if labeled_bs < batch_size and not unlabeled:
            raise ValueError("unlabeled samples are needed when labeled_bs < batch_size")
        if not labeled:
            raise ValueError("at least one labeled sample is needed")
        self.labeled, self.unlabeled = list(labeled), list(unlabeled)
        self.batch_size, self.labeled_bs = batch_size, labeled_bs
        self.num_batches, self.seed, self.start = num_batches, seed, start

    def __len__(self) -> int:
        return max(self.num_batches - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        lab_order, lab_aug, unl_order, unl_aug = (
            np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(4)
        )
        lab = _cycle(self.labeled, lab_order)
        unl = _cycle(self.unlabeled, unl_order) if self.unlabeled else iter(())
        n_unlabeled = self.batch_size - self.labeled_bs
        for b in range(self.num_batches):
            batch = [(next(lab), int(s)) for s in lab_aug.integers(0, 2**63, self.labeled_bs)]
            batch += [(next(unl), int(s)) for s in unl_aug.integers(0, 2**63, n_unlabeled)]
            if b >= self.start:
                yield batch
