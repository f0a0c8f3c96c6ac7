"""Properties of the loss terms (method.md), not their implementation details."""

import math

import pytest
import torch
import torch.nn.functional as F

from cvcl.losses.consistency import softmax_mse
from cvcl.losses.pcl import pcl_losses
from cvcl.losses.prototype import class_prototypes, prototype_logits
from cvcl.losses.supervised import soft_dice_loss, supervised_loss
from cvcl.losses.uncertainty import masked_consistency, teacher_uncertainty, uncertainty_threshold
from cvcl.losses.vcl import gather_features, sample_anchors, supervised_infonce


def two_class_features(b=2, c=6, shape=(8, 8, 8), seed=0):
    """Features whose direction encodes the class: class 0 along e0, class 1 along e1, plus noise."""
    g = torch.Generator().manual_seed(seed)
    classes = (torch.rand((b, *shape), generator=g) > 0.6).long()
    base = torch.zeros(b, c, *shape)
    base[:, 0] = (classes == 0).float() * 3
    base[:, 1] = (classes == 1).float() * 3
    return base + 0.3 * torch.randn(base.shape, generator=g), classes


def test_supervised_loss_is_low_for_the_right_answer_and_high_for_the_wrong():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    good = F.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * 10
    assert supervised_loss(good, target) < 0.01
    assert supervised_loss(-good, target) > 1.0
    assert soft_dice_loss(target.float(), target) == pytest.approx(0.0, abs=1e-6)


def test_prototype_of_a_constant_feature_map_is_that_feature():
    feature = torch.tensor([0.5, -2.0, 3.0])
    feats = feature.view(1, 3, 1, 1, 1).expand(2, 3, 4, 4, 4).contiguous()
    classes = torch.randint(0, 2, (2, 4, 4, 4))
    classes[0, 0, 0, 0], classes[0, 0, 0, 1] = 0, 1
    conf = torch.rand(2, 2, 4, 4, 4) + 0.1
    protos, present = class_prototypes(feats, classes, conf)
    torch.testing.assert_close(protos, feature.expand(2, 3))
    assert present.all()


def test_prototype_predictions_recover_class_separable_features():
    feats, classes = two_class_features()
    protos, _ = class_prototypes(feats, classes, torch.ones(2, 2, 8, 8, 8))
    pred = prototype_logits(feats, protos, scale=20.0).argmax(1)
    assert (pred == classes).float().mean() > 0.99


def test_absent_class_gives_zero_prototype_and_finite_losses():
    feats, _ = two_class_features()
    only_background = torch.zeros(2, 8, 8, 8, dtype=torch.long)
    protos, present = class_prototypes(feats, only_background, torch.ones(2, 2, 8, 8, 8))
    assert present.tolist() == [True, False] and torch.all(protos[1] == 0)
    logits = prototype_logits(feats, protos, 20.0)
    assert torch.isfinite(logits).all()
    feats_u = feats.clone().requires_grad_()
    res = pcl_losses(
        feats, only_background, torch.full((2, 2, 8, 8, 8), 0.5), feats_u, torch.full((2, 2, 8, 8, 8), 0.5), feats, 20.0
    )
    assert math.isfinite(res.l2u.item()) and math.isfinite(res.u2l.item())
    (res.l2u + res.u2l).backward()
    assert torch.isfinite(feats_u.grad).all()


def test_pcl_is_lower_when_unlabeled_features_agree_with_the_teacher():
    feats, classes = two_class_features(seed=1)
    teacher = F.one_hot(classes, 2).permute(0, 4, 1, 2, 3).float()
    agree = pcl_losses(feats, classes, teacher, feats, teacher, feats, 20.0)
    shuffled = feats[:, :, torch.randperm(8)]
    disagree = pcl_losses(feats, classes, teacher, shuffled, teacher, feats, 20.0)
    assert agree.l2u < disagree.l2u
    assert agree.u2l < 0.05


def test_sampler_returns_at_most_n_per_class_hard_first():
    ref = torch.zeros(2, 6, 6, 6, dtype=torch.long)
    ref[:, :3] = 1
    pred = ref.clone()
    pred[0, :1] = 0  # image 0: 72 missed foreground voxels (hard)
    pred[1, 3:4] = 1  # image 1: 36 false foreground voxels (hard, class 0)
    a = sample_anchors(ref, pred, n_classes=2, n=20)
    assert a.index.shape == (2, 2, 20)
    counts = a.valid.sum(-1)
    assert torch.all(counts <= 20) and torch.all(counts == 20)
    flat_ref, flat_pred = ref.reshape(2, -1), pred.reshape(2, -1)
    for b in range(2):
        for k in range(2):
            idx = a.index[b, k][a.valid[b, k]]
            assert torch.all(flat_ref[b, idx] == k)  # anchors belong to their class
            hard = flat_pred[b, idx] != k
            assert torch.equal(hard, a.hard[b, k][a.valid[b, k]])
            n_hard = int(hard.sum())
            assert torch.all(hard[:n_hard]) and not torch.any(hard[n_hard:])  # hard ones first
    assert int(a.hard[0, 1].sum()) == 10 and int(a.hard[1, 0].sum()) == 10  # half hard when available


def test_sampler_tops_up_from_the_other_pool_and_handles_empty_classes():
    ref = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    ref[0, 0, 0, :3] = 1  # 3 foreground voxels, all easy
    a = sample_anchors(ref, ref.clone(), n_classes=2, n=10)
    assert a.valid[0, 1].sum() == 3  # fewer than n available: all of them
    assert a.valid[0, 0].sum() == 10  # no hard background: easy ones fill the quota
    empty = sample_anchors(torch.zeros(1, 4, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, 4, dtype=torch.long), 2, 10)
    assert empty.valid[0, 1].sum() == 0


def test_infonce_is_lower_for_aligned_than_for_shuffled_embeddings():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 20 + [1] * 20)
    centres = F.normalize(torch.randn(2, 16, generator=g), dim=1)
    aligned = F.normalize(centres[labels] + 0.1 * torch.randn(40, 16, generator=g), dim=1)
    valid = torch.ones(40, dtype=torch.bool)
    shuffled = aligned[torch.randperm(40, generator=g)]
    assert supervised_infonce(aligned, labels, valid) < supervised_infonce(shuffled, labels, valid) - 1.0


def test_infonce_ignores_invalid_anchors_and_is_finite_without_positives():
    emb = F.normalize(torch.randn(6, 4), dim=1).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    valid = torch.tensor([True, True, True, True, False, False])
    base = supervised_infonce(emb, labels, valid)
    moved = emb.detach().clone()
    moved[4:] = F.normalize(torch.randn(2, 4), dim=1)
    assert supervised_infonce(moved, labels, valid) == pytest.approx(base.item())
    lonely = supervised_infonce(emb, torch.tensor([0, 1, 2, 3, 4, 5]), torch.ones(6, dtype=torch.bool))
    assert lonely.item() == 0.0
    lonely.backward()
    assert torch.isfinite(emb.grad).all()


def test_gather_features_keeps_batch_and_class_bookkeeping():
    feats = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 2, 2, 2)
    ref = torch.zeros(2, 2, 2, 2, dtype=torch.long)
    ref[1, 0] = 1
    a = sample_anchors(ref, ref, 2, 4)
    picked, classes, valid = gather_features(feats, a)
    assert picked.shape == (2 * 2 * 4, 3) and classes.shape == valid.shape == (16,)
    flat = feats.view(2, 3, -1)
    rows = picked.view(2, 2, 4, 3)
    for b in range(2):
        for k in range(2):
            for j in range(4):
                if a.valid[b, k, j]:
                    torch.testing.assert_close(rows[b, k, j], flat[b, :, a.index[b, k, j]])


def test_uamt_masks_out_uncertain_voxels():
    class Confident(torch.nn.Module):
        def forward(self, x):
            from cvcl.models.vnet import VNetOutput

            logits = torch.cat([-x * 100, x * 100], dim=1)
            return VNetOutput(logits=logits, d9=x, center=x)

    x = torch.ones(2, 1, 4, 4, 4)
    x[:, :, :2] = 0.0  # half the volume: logits 0, maximal entropy
    u = teacher_uncertainty(Confident(), x, passes=4, noise=1e-6)
    assert u.shape == (2, 1, 4, 4, 4)
    assert torch.all(u[:, :, 2:] < 0.01) and torch.all(u[:, :, :2] > 0.69)
    s = torch.randn(2, 2, 4, 4, 4)
    t = torch.randn(2, 2, 4, 4, 4)
    full = masked_consistency(s, t, torch.zeros_like(u), 1.0)
    assert full == pytest.approx(softmax_mse(s, t).item(), rel=1e-5)
    assert masked_consistency(s, t, torch.ones_like(u), 0.5) == 0
    assert uncertainty_threshold(0, 100) == pytest.approx(0.75 * math.log(2) + 0.25 * math.log(2) * math.exp(-5))
    assert uncertainty_threshold(100, 100) == pytest.approx(math.log(2))


def test_two_class_pcl_equals_the_general_formula():
    from cvcl.losses.pcl import _any_classes, _two_class
    from cvcl.losses.prototype import class_prototypes

    g = torch.Generator().manual_seed(3)
    feat_l = torch.randn(2, 6, 6, 5, 4, generator=g, requires_grad=True)
    feat_u = torch.randn(2, 6, 6, 5, 4, generator=g, requires_grad=True)
    label_l = (torch.rand(2, 6, 5, 4, generator=g) > 0.6).long()
    t_prob = torch.softmax(torch.randn(2, 2, 6, 5, 4, generator=g), dim=1)
    proto_l, _ = class_prototypes(feat_l, label_l, torch.softmax(torch.randn(2, 2, 6, 5, 4, generator=g), 1))
    proto_u, _ = class_prototypes(feat_u, t_prob.argmax(1), t_prob)
    fast = _two_class(feat_l, label_l, feat_u, t_prob, proto_l, proto_u, 20.0)
    general = _any_classes(feat_l, label_l, feat_u, t_prob, proto_l, proto_u, 20.0)
    torch.testing.assert_close(fast.l2u, general.l2u)
    torch.testing.assert_close(fast.u2l, general.u2l)
    torch.testing.assert_close(fast.l2u_probs, general.l2u_probs.detach())
    grads_fast = torch.autograd.grad(fast.l2u + fast.u2l, (feat_l, feat_u))
    grads_general = torch.autograd.grad(general.l2u + general.u2l, (feat_l, feat_u))
    for a, b in zip(grads_fast, grads_general, strict=True):
        torch.testing.assert_close(a, b)
