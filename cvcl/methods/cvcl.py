"""CVCL: the mean teacher plus class-level prototype consistency (PCL) and voxel-level
prototype-guided contrast (VCL).

    L_cvcl = mt_weight  * w(t) * L_MT
           + pcl_weight * w(t) * (L_L2U + L_U2L)
           + vcl_weight / 20 * (L_VCL(labeled) + w(t) * L_VCL(unlabeled))

``vcl_weight`` is in the reference code's units (its contrast loss is the InfoNCE divided by
20), so the released script's 0.6 means what it meant there.

A weight of 0 removes its term and its computation, so ``(pcl, vcl) = (0, 0)`` is exactly the
mean teacher, and ``(mt, pcl) = (0, 0)`` what the released training script trains (supervised +
VCL; docs/method.md: "Loss terms").
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, cast

from cvcl.methods import Alias, Batch, FeatureTap, Method, Switch, Term
from cvcl.methods.mean_teacher import MT, add_mean_teacher

if TYPE_CHECKING:
    import torch

    from cvcl.losses.prototype import Features
    from cvcl.models.vnet import VNet, VNetOutput

FEATURE_TAPS: tuple[str, ...] = typing.get_args(FeatureTap)

L2U = Term(
    "loss_pcl_l2u",
    "labeled prototypes classify the unlabeled voxels; MSE to the teacher's softmax",
    "consistency_terms",
    weight="loss.pcl_weight",
)
U2L = Term(
    "loss_pcl_u2l",
    "unlabeled (teacher) prototypes classify the labeled voxels; CE with the labels",
    "consistency_terms",
    weight="loss.pcl_weight",
)
VCL_L = Term(
    "loss_vcl_l",
    "InfoNCE (nats) of hard and easy anchors in the labeled volumes (reference: labels)",
    "contrast_terms",
    weight="loss.vcl_weight",
    projection=True,
)
VCL_U = Term(
    "loss_vcl_u",
    "InfoNCE (nats) of anchors in the unlabeled volumes (reference: prototype prediction)",
    "contrast_terms",
    weight="loss.vcl_weight",
    projection=True,
)


class Cvcl(Method):
    def add_terms(self, batch: Batch) -> None:
        from torch.profiler import record_function  # torch: the declaration imports without it

        from cvcl.precision import full_precision

        add_mean_teacher(batch)
        if not (batch.uses(L2U) or batch.uses(VCL_L)):
            return
        # The prototype terms pool and compare features over millions of voxels: float32 only
        # (float16 overflows there; see cvcl/losses/prototype.py and docs/method.md).
        with full_precision(batch.logits.device), record_function("cvcl.prototype_terms"):
            _prototype_terms(batch)


def _prototype_terms(batch: Batch) -> None:
    """PCL and VCL of ``batch`` (inside the float32 block)."""
    import torch

    from cvcl.losses.pcl import pcl_losses
    from cvcl.losses.prototype import class_prototypes, prototype_logits
    from cvcl.losses.vcl import REFERENCE_SCALE
    from cvcl.models.labels import class_argmax

    cfg, n_labeled, out, w = batch.cfg, batch.n_labeled, batch.out, batch.w
    size = tuple(batch.labels.shape[-3:])
    probs = torch.softmax(batch.logits, dim=1)
    feat_l = _prototype_features(out, cfg.prototype_feature, size, slice(None, n_labeled))
    feat_u = _prototype_features(out, cfg.prototype_feature, size, slice(n_labeled, None))
    label_l = batch.labels[:n_labeled]
    if batch.uses(L2U):
        t_probs = torch.softmax(batch.t_logits, dim=1)
        t_feat = _prototype_features(batch.t_out, cfg.prototype_feature, size)
        pcl = pcl_losses(feat_l, label_l, probs[:n_labeled].detach(), feat_u, t_probs, t_feat, cfg.proto_scale)
        batch.add(cfg.pcl_weight * w * (pcl.l2u + pcl.u2l), {L2U: pcl.l2u, U2L: pcl.u2l})
        reference_u = class_argmax(pcl.l2u_probs.detach())
    if batch.uses(VCL_L):
        if not batch.uses(L2U):  # VCL still needs the prototype prediction of the unlabeled voxels
            with torch.no_grad():
                proto_l, _ = class_prototypes(feat_l, label_l, probs[:n_labeled])
                reference_u = class_argmax(prototype_logits(feat_u, proto_l, cfg.proto_scale))
        prediction = class_argmax(batch.logits.detach())
        vcl_l, vcl_u = _contrast(batch, torch.cat([label_l, reference_u]), prediction)
        # vcl_weight is in the reference's units (its loss is the InfoNCE / 20): the logged
        # terms stay plain InfoNCE in nats, log(anchors) for embeddings that tell nothing apart
        batch.add(cfg.vcl_weight * REFERENCE_SCALE * (vcl_l + w * vcl_u), {VCL_L: vcl_l, VCL_U: vcl_u})


def _prototype_features(out: VNetOutput, tap: str, size: tuple[int, ...], images: slice = slice(None)) -> Features:
    """The ``tap`` features of ``images`` on the label grid ``size``, ``(b, C, *size)``.

    The coarse ``center`` features stay coarse (:class:`UpsampledFeatures`: the prototype terms
    are computed exactly without upsampling them); features already on the grid are widened to
    float32 (channels-last) as they are."""
    from cvcl.losses.upsampled import UpsampledFeatures, coarse_enough, upsample_to
    from cvcl.precision import widen

    features = (out.center if tap == "center" else out.d9)[images]
    if coarse_enough(features, size):
        return UpsampledFeatures(features, size)
    return upsample_to(widen(features), size)


def _contrast(batch: Batch, reference: torch.Tensor, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VCL of the labeled and of the unlabeled volumes: ``reference`` and ``prediction``
    ``(B, X, Y, Z)`` label maps of the whole batch choose the anchors; two 0-d InfoNCEs.

    The anchors of all volumes are drawn and gathered from the whole ``d9`` at once, then split:
    gathering from each half's slice would make the backward build two zero-filled gradients of
    the whole ``d9`` (as large as the decoder's last feature map) and add them."""
    from cvcl.losses.vcl import gather_features, sample_anchors, supervised_infonce
    from cvcl.precision import widen

    anchors = sample_anchors(reference, prediction, batch.n_classes, batch.cfg.n_anchor)
    features, classes, valid = gather_features(batch.out.d9, anchors)  # (M, f), image-major
    # the head on the gathered voxels only: the same as projecting the volume, at a fraction of the cost
    # (Batch.student is typed as any module; the methods that contrast are given a VNet)
    embeddings = cast("VNet", batch.student).project_rows(widen(features))
    split = batch.n_labeled * anchors.index[0].numel()  # rows of the labeled images

    def infonce(rows: slice) -> torch.Tensor:
        return supervised_infonce(embeddings[rows], classes[rows], valid[rows], batch.cfg.temperature)

    return infonce(slice(None, split)), infonce(slice(split, None))


METHOD = Cvcl(
    name="cvcl",
    description="mean teacher + class-level prototype consistency + voxel-level contrast",
    order=3,
    terms=(MT, L2U, U2L, VCL_L, VCL_U),
    switches=(
        Switch("mt", "loss.mt_weight", quiet=1.0),
        Switch("pcl", "loss.pcl_weight"),
        Switch("vcl", "loss.vcl_weight"),
    ),
    aliases=(
        Alias("mean teacher", frozenset({"mt"})),
        Alias("PCL only", frozenset({"mt", "pcl"})),
        Alias("VCL only", frozenset({"mt", "vcl"})),
        # what train_CPCL_general_3D.py trains: its MT, L2U and U2L lines are commented out
        Alias("released code: supervised + VCL", frozenset({"vcl"})),
    ),
)
