"""Resuming an interrupted training from its last checkpoint.

``train`` saves its whole state every ``train.checkpoint_every`` iterations: student, teacher,
optimiser, AMP scaler, the next iteration, every random generator's state and the caller's own
records (the log rows, the MLflow run id). The sampler skips the batches already trained on,
and the data augmentation is seeded per sample by the sampler, so on the CPU a resumed run
reaches the same weights as an uninterrupted one, bit for bit (a test kills one with SIGKILL).

Checkpoints live in ``<project>/.cvcl/checkpoints/<key>/``, outside DVC's outputs (DVC deletes
a stage's outputs before rerunning it) and keyed by a hash of everything the stage's result
depends on (its params, the split, the processed data's manifest and the code), so a rerun
with the same inputs resumes and any change starts afresh. A finished training removes its
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from cvcl.io.atomic import atomic_path
from cvcl.workspace import MANIFEST

STATE_FILE = "state.pt"


def inputs_key(parts: Iterable[str | bytes]) -> str:
    """A short hash of the inputs a training result depends on."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:16]


def code_files(root: Path) -> list[Path]:
    """The Python sources a training's result depends on: the ``cvcl`` package and the stage."""
    return sorted((root / "cvcl").rglob("*.py")) + [root / "stages" / "train.py"]


class CheckpointStore:
    """One training's checkpoint folder; ``every`` iterations between saves (0: never)."""

    def __init__(self, folder: str | Path, every: int) -> None:
        self.folder, self.every = Path(folder), int(every)

    @property
    def path(self) -> Path:
        return self.folder / STATE_FILE

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save(self, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def others(self) -> list[Path]:
        """Checkpoints of other inputs kept beside this one (interrupted runs of other params)."""
        parent = self.folder.parent
        return (
            [p for p in parent.iterdir() if p != self.folder and (p / STATE_FILE).is_file()] if parent.is_dir() else []
        )


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def stage_store(root: Path, params_flat: dict, split: Path, processed: Path, every: int) -> CheckpointStore:
    """The checkpoint folder of the train stage for these inputs, under ``root/.cvcl``."""
    key = inputs_key(
        [
            json.dumps(params_flat, sort_keys=True, default=str),
            split.read_bytes(),
            (processed / MANIFEST).read_bytes(),
            *(f.read_bytes() for f in code_files(Path.cwd())),
        ]
    )
    return CheckpointStore(root / ".cvcl" / "checkpoints" / key, every)
