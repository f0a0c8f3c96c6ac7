"""CVCL on real LA volumes: a few iterations, finite losses and a decreasing supervised loss (slow: ~1 min)."""

import math

import h5py
import numpy as np
import pytest
import torch

from cvcl.data.dataset import PatchDataset
from cvcl.io.volume import Case, Geometry, write_case
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.trainer import train
from tests.conftest import LA_SAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def la_cases(tmp_path_factory):
    if not LA_SAMPLE.is_dir():
        pytest.skip(f"the LA sample is not at {LA_SAMPLE}")
    out = tmp_path_factory.mktemp("la")
    ids = (LA_SAMPLE / "train.list").read_text().split()[:8]
    for case_id in ids:
        with h5py.File(LA_SAMPLE / "2018LA_Seg_Training Set" / case_id / "mri_norm2.h5") as f:
            image, label = f["image"][()], f["label"][()]
        write_case(
            out / f"{case_id}.h5",
            Case(
                case_id,
                image[None].astype(np.float32),
                label.astype(np.uint8),
                Geometry.from_spacing((0.625, 0.625, 0.625)),
                "la",
            ),
        )
    return out, ids


def test_cvcl_on_real_la_volumes_has_finite_losses_and_learns(la_cases):
    folder, ids = la_cases
    ds = PatchDataset(folder, ids[:4], ids[4:], patch=(64, 64, 48))
    assert ds.in_channels == 1 and len(ds) == 8
    iterations = 40
    cfg = TrainConfig(iterations=iterations, patch=(64, 64, 48), batch_size=4, labeled_bs=2, lr=0.01)
    objective = Objective("cvcl", LossConfig(rampup_epochs=5, rampup_length=0.5, n_anchor=50), iterations)
    records = []
    train(
        ds,
        ModelConfig(base_filters=4, embed_dim=16),
        cfg,
        objective,
        torch.device("cpu"),
        seed=0,
        on_step=lambda step, rec: records.append(rec),
        progress=False,
    )
    assert len(records) == iterations
    for rec in records:
        assert all(math.isfinite(v) for v in rec.values()), rec
    assert {"loss_pcl_l2u", "loss_pcl_u2l", "loss_vcl_l", "loss_vcl_u"} <= set(records[0])
    # The total is not compared: the unsupervised weights ramp up over these 40 steps, so the
    # total may rise while the model learns. The supervised term has a constant weight.
    assert all(r["loss_vcl_l"] > 0 and r["loss_vcl_u"] >= 0 for r in records)
    sup_first = np.mean([r["loss_sup"] for r in records[:10]])
    sup_last = np.mean([r["loss_sup"] for r in records[-10:]])
    assert sup_last < sup_first, (sup_first, sup_last)
