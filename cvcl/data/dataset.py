"""Patch datasets over processed cases."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cvcl.data.augment import random_crop, random_rot_flip
from cvcl.errors import DataError
from cvcl.io.volume import int3, read_case
from cvcl.workspace import case_file


class PatchDataset(Dataset):
    """Random augmented patches of processed cases, indexed by ``(case index, seed)``.

    Cases ``[0, n_labeled)`` keep their labels; the others are loaded *without* labels, so an
    unlabeled case can never leak its ground truth into training (its label patch is zeros).

    Items: ``image`` float32 ``(C, px, py, pz)``, ``label`` int64 ``(px, py, pz)``.
    """

    def __init__(
        self,
        processed_dir: str | Path,
        labeled: Sequence[str],
        unlabeled: Sequence[str],
        patch: tuple[int, int, int],
        augment: bool = True,
    ) -> None:
        self.patch = int3(patch)
        self.augment = augment
        self.case_ids = list(labeled) + list(unlabeled)
        self.n_labeled = len(labeled)
        self.images: list[np.ndarray] = []
        self.labels: list[np.ndarray | None] = []
        for i, case_id in enumerate(self.case_ids):
            path = case_file(case_id, processed_dir)
            if not path.is_file():
                raise DataError(path, "not found; the split names a case that was not preprocessed")
            case = read_case(path)
            if i < self.n_labeled and case.label is None:
                raise DataError(path, "has no label but the split lists it as labeled")
            self.images.append(case.image)
            self.labels.append(case.label if i < self.n_labeled else None)

    @property
    def in_channels(self) -> int:
        return int(self.images[0].shape[0])

    def shapes(self) -> list[tuple[int, int, int]]:
        return [tuple(img.shape[-3:]) for img in self.images]

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        rng = np.random.default_rng(seed)
        image = self.images[index]
        label = self.labels[index]
        if label is None:
            label = np.zeros(image.shape[-3:], dtype=np.uint8)
        if self.augment:
            image, label = random_rot_flip(image, label, rng)
        image, label = random_crop(image, label, self.patch, rng)
        return {"image": torch.from_numpy(image), "label": torch.from_numpy(label.astype(np.int64))}
