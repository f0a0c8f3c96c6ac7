"""The CVCL collapse on real LA under AMP, caught on CPU-sized data.

Under float16 autocast the prototype ops overflowed (sums over every voxel of the batch pass
65504 at the paper's patch) and the cosine of an all-zero (post-ReLU) feature vector was 0/0;
the PCL loss was NaN at every step, the GradScaler skipped every step, and the network never
trained. CPU autocast in float16 exercises the same dtype rules as CUDA's.
"""

import math

import pytest
import torch

from cvcl.losses.prototype import class_prototypes, prototype_logits, prototype_margin
from cvcl.methods import LossConfig
from cvcl.models.vnet import VNet
from cvcl.training.ema import make_teacher
from cvcl.training.objective import Objective

FP16 = dict(device_type="cpu", dtype=torch.float16)


def _features(n_voxels_side=(96, 96, 48), channels=16, zero_fraction=0.2):
    g = torch.Generator().manual_seed(0)
    feat = torch.relu(torch.randn(2, channels, *n_voxels_side, generator=g)) + 0.5
    feat[:, :, : int(n_voxels_side[0] * zero_fraction)] = 0  # dark background: all-zero post-ReLU vectors
    labels = torch.zeros(2, *n_voxels_side, dtype=torch.long)
    labels[:, 40:60, 40:60, 10:30] = 1
    conf = torch.softmax(torch.randn(2, 2, *n_voxels_side, generator=g), 1)
    return feat, labels, conf


def test_prototypes_under_float16_autocast_are_finite_and_equal_float32():
    feat, labels, conf = _features()  # 2 x 442k voxels: a float16 sum of them overflows
    ref, _ = class_prototypes(feat, labels, conf)
    with torch.autocast(**FP16):
        got, _ = class_prototypes(feat.half(), labels, conf.half())
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)


def test_prototype_scores_of_zero_features_are_finite_under_float16():
    feat, labels, conf = _features((32, 32, 16))
    protos, _ = class_prototypes(feat, labels, conf)
    with torch.autocast(**FP16):
        margin = prototype_margin(feat.half(), protos, 20.0)
        logits = prototype_logits(feat.half(), protos, 20.0)
    assert torch.isfinite(margin).all() and torch.isfinite(logits).all()
    assert (margin.reshape(2, 32, 32, 16)[:, :6] == 0).all()  # zero feature: cosine 0 with both


@pytest.mark.parametrize("pcl,vcl", [(1.0, 0.0), (0.0, 0.6), (1.0, 0.6)])
def test_cvcl_objective_under_float16_autocast_is_finite_and_matches_float32(pcl, vcl):
    torch.manual_seed(0)
    student = VNet(base_filters=4, embed_dim=8, norm="batch")
    teacher = make_teacher(student, lambda: VNet(base_filters=4, embed_dim=8, norm="batch"))
    student.eval(), teacher.eval()  # no dropout: both precisions see the same network
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 1, 64, 64, 32, generator=g)
    labels = torch.zeros(4, 64, 64, 32, dtype=torch.long)
    labels[:2, 20:40, 20:40, 8:20] = 1
    cfg = LossConfig(rampup_length=0.0, n_anchor=16, pcl_weight=pcl, vcl_weight=vcl)
    objective = Objective("cvcl", cfg, 100)
    torch.manual_seed(5)
    ref_total, ref_terms = objective(student, teacher, images, labels, 2, step=5)
    torch.manual_seed(5)
    with torch.autocast(**FP16):
        total, terms = objective(student, teacher, images, labels, 2, step=5)
    assert math.isfinite(total.item()), terms
    for name in ("loss_pcl_l2u", "loss_pcl_u2l", "loss_vcl_l", "loss_vcl_u"):
        if name in ref_terms:
            assert math.isfinite(terms[name].item()), (name, terms)
            assert terms[name].item() == pytest.approx(ref_terms[name].item(), rel=0.05, abs=0.02), name
    if vcl:  # the unlabeled contrast has two classes to contrast (a NaN prototype gave none: 0)
        assert terms["loss_vcl_u"].item() > 0
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)


def test_coarse_features_held_coarse_are_finite_and_equal_float32_under_float16():
    """The center tap's path (cvcl/losses/upsampled.py): float16 coarse features, sums over the
    whole label grid and all-zero vectors stay finite, computed in float32."""
    from cvcl.losses.upsampled import UpsampledFeatures

    g = torch.Generator().manual_seed(0)
    coarse = torch.relu(torch.randn(2, 32, 6, 6, 3, generator=g)) + 0.5
    coarse[:, :, :2] = 0  # all-zero post-ReLU vectors
    size = (96, 96, 48)  # 2 x 442k voxels: a float16 sum overflows
    labels = torch.zeros(2, *size, dtype=torch.long)
    labels[:, 40:60, 40:60, 10:30] = 1
    conf = torch.softmax(torch.randn(2, 2, *size, generator=g), 1)
    ref, _ = class_prototypes(UpsampledFeatures(coarse, size), labels, conf)
    ref_margin = prototype_margin(UpsampledFeatures(coarse, size), ref, 20.0)
    with torch.autocast(**FP16):
        field = UpsampledFeatures(coarse.half(), size)
        got, _ = class_prototypes(field, labels, conf.half())
        margin = prototype_margin(field, got, 20.0)
    assert got.dtype == torch.float32 and torch.isfinite(got).all() and torch.isfinite(margin).all()
    torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(margin, ref_margin, rtol=1e-2, atol=1e-2)
    assert (margin.reshape(2, *size)[:, :16] == 0).all()  # voxels whose 8 coarse neighbours are all zero
