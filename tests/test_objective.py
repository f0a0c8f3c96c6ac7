"""The composed objective of each method on a tiny network."""

import math
from dataclasses import replace

import pytest
import torch

from cvcl.methods import LossConfig
from cvcl.models.vnet import VNet
from cvcl.training.ema import make_teacher
from cvcl.training.objective import Objective

SHAPE = (32, 16, 16)


def nets(embed=8):
    torch.manual_seed(0)
    student = VNet(base_filters=4, embed_dim=embed)
    teacher = make_teacher(student, lambda: VNet(base_filters=4, embed_dim=embed))
    return student, teacher


def batch(n_labeled, n_unlabeled, empty_foreground=False):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n_labeled + n_unlabeled, 1, *SHAPE, generator=g)
    labels = torch.zeros(n_labeled + n_unlabeled, *SHAPE, dtype=torch.long)
    if not empty_foreground:
        labels[:n_labeled, 8:20, 4:10, 4:10] = 1
    return images, labels


CFG = LossConfig(rampup_length=0.0, n_anchor=16)


@pytest.mark.parametrize(
    "method,terms",
    [
        ("supervised", {"loss_sup"}),
        ("mean_teacher", {"loss_sup", "loss_mt", "consistency_weight"}),
        ("ua_mt", {"loss_sup", "loss_uamt", "consistency_weight"}),
        (
            "cvcl",
            {"loss_sup", "loss_mt", "loss_pcl_l2u", "loss_pcl_u2l", "loss_vcl_l", "loss_vcl_u", "consistency_weight"},
        ),
    ],
)
def test_each_method_computes_its_terms(method, terms):
    student, teacher = nets()
    images, labels = batch(2, 2) if method != "supervised" else batch(2, 0)
    total, out = Objective(method, CFG, 100)(student, teacher, images, labels, 2, step=5)
    assert set(out) == terms
    assert math.isfinite(total.item())


def test_zero_weights_remove_terms_so_cvcl_reduces_to_mean_teacher():
    student, teacher = nets()
    images, labels = batch(2, 2)
    off = LossConfig(rampup_length=0.0, pcl_weight=0, vcl_weight=0)
    torch.manual_seed(3)
    cvcl_total, cvcl_terms = Objective("cvcl", off, 100)(student, teacher, images, labels, 2, 5)
    torch.manual_seed(3)
    mt_total, mt_terms = Objective("mean_teacher", off, 100)(student, teacher, images, labels, 2, 5)
    assert set(cvcl_terms) == set(mt_terms)
    student.eval(), teacher.eval()  # no dropout: both objectives see identical forward passes
    torch.manual_seed(3)
    a, _ = Objective("cvcl", off, 100)(student, teacher, images, labels, 2, 5)
    torch.manual_seed(3)
    b, _ = Objective("mean_teacher", off, 100)(student, teacher, images, labels, 2, 5)
    assert a.item() == pytest.approx(b.item())


def test_gradients_reach_student_and_projection_head_never_the_teacher():
    student, teacher = nets()
    images, labels = batch(2, 2)
    total, _ = Objective("cvcl", CFG, 100)(student, teacher, images, labels, 2, step=50)
    total.backward()
    head = [p.grad for n, p in student.named_parameters() if n.startswith("projection.")]
    assert head and all(g is not None and g.abs().sum() > 0 for g in head)
    assert student.enc[0][0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("n_labeled,n_unlabeled", [(1, 3), (3, 1), (2, 5)])
def test_any_batch_composition_gives_a_finite_loss(n_labeled, n_unlabeled):
    student, teacher = nets()
    images, labels = batch(n_labeled, n_unlabeled)
    total, terms = Objective("cvcl", CFG, 100)(student, teacher, images, labels, n_labeled, step=7)
    assert math.isfinite(total.item())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_labeled_images_without_foreground_give_no_nan():
    student, teacher = nets()
    images, labels = batch(2, 2, empty_foreground=True)
    total, terms = Objective("cvcl", CFG, 100)(student, teacher, images, labels, 2, step=7)
    assert all(math.isfinite(v.item()) for v in terms.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_vcl_alone_still_uses_prototype_references():
    student, teacher = nets()
    images, labels = batch(2, 2)
    vcl_only = LossConfig(rampup_length=0.0, pcl_weight=0, vcl_weight=1, n_anchor=16)
    _, terms = Objective("cvcl", vcl_only, 100)(student, teacher, images, labels, 2, step=3)
    assert "loss_vcl_u" in terms and "loss_pcl_l2u" not in terms


@pytest.mark.parametrize("split_bn", [False, True])
def test_split_bn_keeps_the_unlabeled_images_out_of_the_labeled_statistics(split_bn):
    # With shared BatchNorm statistics the supervised loss of the labeled half depends on the
    # unlabeled volumes in the batch; with split_bn it is the supervised baseline's loss.
    torch.manual_seed(0)
    student = VNet(base_filters=4, embed_dim=8, dropout=0.0)
    teacher = make_teacher(student, lambda: VNet(base_filters=4, embed_dim=8, dropout=0.0))
    images, labels = batch(2, 2)
    objective = Objective("cvcl", CFG, 100, split_bn=split_bn)
    _, mixed = objective(student, teacher, images, labels, 2, step=5)
    _, other = objective(student, teacher, torch.cat([images[:2], 3 * images[2:] + 1]), labels, 2, step=5)
    alone, _ = Objective("supervised", CFG, 100)(student, None, images[:2], labels[:2], 2, step=5)
    assert torch.isclose(mixed["loss_sup"], other["loss_sup"], atol=1e-6) == split_bn
    assert torch.isclose(mixed["loss_sup"], alone, atol=1e-6) == split_bn
    assert all(torch.isfinite(v) for v in mixed.values())


def test_vcl_weight_is_in_the_reference_units():
    """The objective adds vcl_weight / 20 x the plain InfoNCE: the reference's PixelContrastLoss is
    the InfoNCE / 20, so vcl_weight 0.6 trains what the released script's 0.6 trained."""
    student, teacher = nets()
    images, labels = batch(2, 2)
    released = LossConfig(rampup_length=0.0, consistency=0.1, mt_weight=0, pcl_weight=0, vcl_weight=0.6, n_anchor=16)
    total, terms = Objective("cvcl", released, 100)(student, teacher, images, labels, 2, step=3)
    assert set(terms) == {"loss_sup", "loss_vcl_l", "loss_vcl_u", "consistency_weight"}
    contrast = total - terms["loss_sup"]
    expected = 0.6 / 20 * (terms["loss_vcl_l"] + 0.1 * terms["loss_vcl_u"])
    torch.testing.assert_close(contrast, expected, rtol=1e-5, atol=1e-7)
    assert 0.5 < terms["loss_vcl_l"].item() < 10  # plain InfoNCE in nats is what the log shows


def reference_contrast(embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The reference's formula, written here from its description: logits cos / 0.1 (its
    base_temperature), log-softmax over every other anchor, the mean over positives, and the
    negative mean over anchors divided by 20 (its temperature)."""
    logits = embeddings @ embeddings.T / 0.1
    eye = torch.eye(len(classes), dtype=torch.bool)
    log_prob = logits - torch.logsumexp(logits.masked_fill(eye, -torch.inf), dim=1, keepdim=True)
    positive = (classes[:, None] == classes[None, :]) & ~eye
    mean_log_prob_pos = (log_prob * positive).sum(1) / positive.sum(1)
    return -mean_log_prob_pos.mean() / 20


def test_the_reference_loss_is_the_infonce_over_twenty():
    # With one positive per anchor the reference's denominator (every other anchor) is ours
    # (the positive and the negatives), so the two losses differ by the factor 20 alone.
    from cvcl.losses.vcl import REFERENCE_SCALE, supervised_infonce

    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=1)
    classes = torch.tensor([0, 0, 1, 1])
    ours = supervised_infonce(emb, classes, torch.ones(4, dtype=torch.bool), temperature=0.1)
    assert REFERENCE_SCALE == 1 / 20
    torch.testing.assert_close(0.6 * reference_contrast(emb, classes), 0.6 * REFERENCE_SCALE * ours)


def test_student_noise_perturbs_the_unlabeled_half_only_and_is_off_by_default():
    # loss.student_noise: the labeled half's loss is untouched (split_bn keeps its statistics
    # apart), the unlabeled half sees noise, so the consistency term changes; 0 draws nothing
    student, teacher = nets()
    images, labels = batch(2, 2)
    quiet = LossConfig(rampup_length=0.0, teacher_noise=0.0)  # the student's noise the only draw
    clean = Objective("mean_teacher", quiet, 100, split_bn=True)
    noisy = Objective("mean_teacher", replace(quiet, student_noise=0.5), 100, split_bn=True)
    student.eval(), teacher.eval()  # dropout off: any difference is the noise's
    torch.manual_seed(7)
    _, a = clean(student, teacher, images, labels, 2, step=5)
    after_clean = torch.rand(())
    torch.manual_seed(7)
    _, b = clean(student, teacher, images, labels, 2, step=5)
    torch.manual_seed(7)
    _, c = noisy(student, teacher, images, labels, 2, step=5)
    after_noisy = torch.rand(())
    assert torch.equal(a["loss_mt"], b["loss_mt"])
    assert torch.isclose(a["loss_sup"], c["loss_sup"], atol=1e-6)
    assert not torch.isclose(a["loss_mt"], c["loss_mt"], atol=1e-7)
    assert after_clean != after_noisy  # the noise is one more draw from the stream; none by default
