"""The prototype terms on coarse features held coarse equal those on the upsampled features.

Reference: tests/prototype_reference.py, the computation before issue 20 (upsample to the label
grid, then pool and compare voxel by voxel). Values and gradients in float64, both feature
taps, 2 and 3 classes, unequal labeled and unlabeled halves, and the whole CVCL objective.
"""

import pytest
import torch
import torch.nn.functional as F

import cvcl.methods.cvcl as cvcl_method
from cvcl.losses.pcl import pcl_losses
from cvcl.losses.prototype import (
    class_prototypes,
    prototype_logits,
    prototype_margin,
    prototype_scores,
)
from cvcl.losses.upsampled import (
    UpsampledFeatures,
    coarse_enough,
    resize_adjoint,
    upsample_to,
)
from cvcl.methods import LossConfig
from cvcl.models.vnet import VNet
from cvcl.training.ema import make_teacher
from cvcl.training.objective import Objective
from tests import prototype_reference as ref

TOL = {"rtol": 1e-9, "atol": 1e-11}


def _coarse(b, c, grid, seed, relu=True):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, *grid, generator=g, dtype=torch.float64)
    return z.relu() if relu else z  # the center tap is post-ReLU: zero vectors occur


@pytest.mark.parametrize("grid,size", [((2, 3, 2), (32, 48, 32)), ((3, 5, 4), (7, 16, 9)), ((4, 4, 4), (4, 9, 17))])
def test_the_adjoint_is_the_transpose_of_the_resize(grid, size):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, *grid, generator=g, dtype=torch.float64)
    b = torch.randn(2, 3, *size, generator=g, dtype=torch.float64)
    up = F.interpolate(a, size=size, mode="trilinear", align_corners=False)
    assert torch.allclose(upsample_to(a, size), up, **TOL)
    # <U a, b> = <a, U^T b> for every a and b: U^T is the transpose, not some other pull-back
    torch.testing.assert_close((up * b).sum(), (a * resize_adjoint(b, grid)).sum(), **TOL)
    basis = torch.zeros(1, 1, *grid, dtype=torch.float64)
    basis[0, 0, 1, 1, 1] = 1.0
    column = F.interpolate(basis, size=size, mode="trilinear", align_corners=False)
    assert resize_adjoint(b[:1, :1], grid)[0, 0, 1, 1, 1].item() == pytest.approx((column * b[:1, :1]).sum().item())


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("grid,size", [((3, 2, 4), (12, 7, 16)), ((6, 4, 3), (12, 8, 6)), ((5, 1, 3), (10, 4, 3))])
def test_pool_dot_and_norm_equal_the_upsampled_features_with_gradients(relu, grid, size):
    z = _coarse(3, 5, grid, 1, relu).requires_grad_()
    field = UpsampledFeatures(z, size)
    dense = upsample_to(z, size)
    assert field.shape == dense.shape
    g = torch.Generator().manual_seed(2)
    weights = torch.rand(3, 2, *size, generator=g, dtype=torch.float64)
    vectors = torch.randn(2, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(field.pool(weights), torch.einsum("bkxyz,bcxyz->kc", weights, dense), **TOL)
    torch.testing.assert_close(field.dot(vectors), torch.einsum("bcxyz,kc->bkxyz", dense, vectors), **TOL)
    torch.testing.assert_close(field.norm(), torch.linalg.vector_norm(dense, dim=1).clamp_min(1e-12), **TOL)
    upstream = torch.randn(3, *size, generator=g, dtype=torch.float64)
    (mine,) = torch.autograd.grad((field.norm() * upstream).sum() + field.dot(vectors).sum(), z)
    (theirs,) = torch.autograd.grad(
        (torch.linalg.vector_norm(dense, dim=1) * upstream).sum()
        + torch.einsum("bcxyz,kc->bkxyz", dense, vectors).sum(),
        z,
    )
    torch.testing.assert_close(mine, theirs, **TOL)


def test_an_all_zero_feature_vector_has_the_clamped_norm_and_no_nan_gradient():
    z = torch.zeros(1, 4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    field = UpsampledFeatures(z, (4, 4, 4))
    assert torch.all(field.norm() == 1e-12)
    (grad,) = torch.autograd.grad(field.norm().sum(), z)
    assert torch.all(grad == 0)


def _pcl_inputs(n_classes, n_l, n_u, grid, size, channels=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    student = _coarse(n_l + n_u, channels, grid, seed).requires_grad_()
    teacher = _coarse(n_u, channels, grid, seed + 1)
    labels = torch.randint(0, n_classes, (n_l, *size), generator=g)
    prob_l = torch.softmax(torch.randn(n_l, n_classes, *size, generator=g, dtype=torch.float64), 1)
    t_prob = torch.softmax(3 * torch.randn(n_u, n_classes, *size, generator=g, dtype=torch.float64), 1)
    return student, teacher, labels, prob_l, t_prob


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("n_l,n_u", [(1, 3), (2, 2), (3, 1)])
def test_pcl_on_coarse_features_equals_the_reference_on_upsampled_ones(n_classes, n_l, n_u):
    grid, size = (2, 3, 2), (16, 24, 12)
    student, teacher, labels, prob_l, t_prob = _pcl_inputs(n_classes, n_l, n_u, grid, size)
    new = pcl_losses(
        UpsampledFeatures(student[:n_l], size),
        labels,
        prob_l,
        UpsampledFeatures(student[n_l:], size),
        t_prob,
        UpsampledFeatures(teacher, size),
        20.0,
    )

    def up(z):
        return ref.upsample_to(z, size)

    old = ref.pcl_losses(up(student[:n_l]), labels, prob_l, up(student[n_l:]), t_prob, up(teacher), 20.0)
    for mine, theirs in zip((new.l2u, new.u2l, new.l2u_probs), old, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)
    for term in (0, 1):  # each term's gradient to the student's coarse features
        (mine,) = torch.autograd.grad((new.l2u, new.u2l)[term], student, retain_graph=True)
        (theirs,) = torch.autograd.grad(old[term], student, retain_graph=True)
        torch.testing.assert_close(mine, theirs, **TOL)
        assert mine.abs().sum() > 0


@pytest.mark.parametrize("n_classes", [2, 3])
def test_pcl_on_label_grid_features_equals_the_reference(n_classes):
    """The d9 tap: features already on the label grid take the direct path."""
    size = (8, 6, 4)
    student, teacher, labels, prob_l, t_prob = _pcl_inputs(n_classes, 1, 3, size, size, channels=4)
    assert not coarse_enough(student, size)
    new = pcl_losses(student[:1], labels, prob_l, student[1:], t_prob, teacher, 20.0)
    old = ref.pcl_losses(student[:1], labels, prob_l, student[1:], t_prob, teacher, 20.0)
    for mine, theirs in zip((new.l2u, new.u2l, new.l2u_probs), old, strict=True):
        torch.testing.assert_close(mine, theirs, **TOL)
    (mine,) = torch.autograd.grad(new.l2u + new.u2l, student)
    (theirs,) = torch.autograd.grad(old[0] + old[1], student)
    torch.testing.assert_close(mine, theirs, **TOL)


def test_prototypes_scores_and_logits_equal_the_reference():
    size = (10, 9, 8)
    student, _, labels, prob_l, _ = _pcl_inputs(3, 2, 1, (3, 3, 2), size)
    field, dense = UpsampledFeatures(student[:2], size), ref.upsample_to(student[:2], size)
    protos, present = class_prototypes(field, labels, prob_l)
    ref_protos, ref_present = ref.class_prototypes(dense, labels, prob_l)
    torch.testing.assert_close(protos, ref_protos, **TOL)
    assert torch.equal(present, ref_present)
    torch.testing.assert_close(prototype_scores(field, protos, 20.0), ref.prototype_scores(dense, protos, 20.0), **TOL)
    torch.testing.assert_close(
        prototype_margin(field, protos[:2], 20.0), ref.prototype_margin(dense, protos[:2], 20.0), **TOL
    )
    logits = prototype_logits(field, protos, 20.0)
    assert logits.shape == (2, 3, *size)
    torch.testing.assert_close(logits, prototype_logits(dense, protos, 20.0), **TOL)


def _materialised(out, tap, size, images=slice(None)):
    """The feature preparation of the code before issue 20: upsample, then compute on the grid."""
    return ref.upsample_to((out.center if tap == "center" else out.d9)[images].double(), size)


@pytest.mark.parametrize("tap", ["center", "d9"])
@pytest.mark.parametrize("n_classes,n_labeled", [(2, 1), (2, 2), (3, 1)])
def test_the_cvcl_objective_and_its_gradients_equal_the_upsampling_implementation(
    monkeypatch, tap, n_classes, n_labeled
):
    shape = (32, 16, 16)
    torch.manual_seed(0)
    student = VNet(base_filters=2, embed_dim=8, n_classes=n_classes).double()
    teacher = make_teacher(student, lambda: VNet(base_filters=2, embed_dim=8, n_classes=n_classes).double())
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 1, *shape, generator=g, dtype=torch.float64)
    labels = torch.zeros(4, *shape, dtype=torch.long)
    labels[:n_labeled, 8:20, 4:10, 4:10] = 1
    labels[:n_labeled, 2:6, 2:6, 2:6] = n_classes - 1
    objective = Objective(
        "cvcl", LossConfig(rampup_length=0.0, n_anchor=16, prototype_feature=tap), 100, n_classes=n_classes
    )

    def run():
        student.zero_grad()
        torch.manual_seed(5)  # dropout, teacher noise and anchors draw the same numbers in both runs
        total, terms = objective(student, teacher, images, labels, n_labeled, step=50)
        total.backward()
        return terms, {k: p.grad.clone() for k, p in student.named_parameters() if p.grad is not None}

    terms, grads = run()
    monkeypatch.setattr(cvcl_method, "_prototype_features", _materialised)
    ref_terms, ref_grads = run()
    assert set(terms) == set(ref_terms) and {"loss_pcl_l2u", "loss_pcl_u2l"} <= set(terms)
    for k in terms:
        torch.testing.assert_close(terms[k], ref_terms[k], rtol=1e-8, atol=1e-10, msg=k)
    assert grads.keys() == ref_grads.keys()
    for k in grads:
        torch.testing.assert_close(grads[k], ref_grads[k], rtol=1e-7, atol=1e-10, msg=k)
