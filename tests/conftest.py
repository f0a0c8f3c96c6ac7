"""Shared fixtures: tiny synthetic data, the shared real-data sample, a private MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
LA_SAMPLE = SHARED_DATASETS / "la-sample"


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """Point MLflow at a SQLite store of this test alone."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def ball(shape, centre, radius) -> np.ndarray:
    """Boolean ball of ``radius`` voxels at ``centre`` in a volume of ``shape``."""
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return d2 <= radius**2


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    # two cores: keep each test's torch from oversubscribing them
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
