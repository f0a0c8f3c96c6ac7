"""PCL: class-level prototype consistency in both directions (after CPCL).

- Labeled-to-unlabeled (L2U): prototypes of the labeled images (ground-truth masks, student
  confidences) classify the student's features of the unlabeled images; the squared
  difference to the teacher's softmax is the loss.
- Unlabeled-to-labeled (U2L): prototypes of the unlabeled images (teacher pseudo-labels and
  confidences, teacher features) classify the student's features of the labeled images;
  cross-entropy with the ground truth is the loss.

Prototypes carry no gradient; the student's features do, so both terms train the student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cvcl.losses.prototype import Features, class_prototypes, prototype_margin, prototype_scores, voxel_rows
from cvcl.models.labels import class_argmax
from cvcl.precision import widen


@dataclass
class PCLResult:
    l2u: torch.Tensor  # scalar
    u2l: torch.Tensor  # scalar
    l2u_probs: torch.Tensor  # (B_u, K, X, Y, Z) prototype prediction of the unlabeled voxels


def pcl_losses(
    feat_l: Features,
    label_l: torch.Tensor,
    prob_l: torch.Tensor,
    feat_u: Features,
    teacher_prob_u: torch.Tensor,
    teacher_feat_u: Features,
    scale: float,
) -> PCLResult:
    """Both PCL terms.

    Args:
        feat_l: student features of the labeled images ``(B_l, C, X, Y, Z)`` (on the label grid,
            or coarse ones held as :class:`cvcl.losses.upsampled.UpsampledFeatures`).
        label_l: ground truth ``(B_l, X, Y, Z)`` int64.
        prob_l: student softmax of the labeled images ``(B_l, K, X, Y, Z)``.
        feat_u: student features of the unlabeled images ``(B_u, C, X, Y, Z)``.
        teacher_prob_u: teacher softmax of the unlabeled images ``(B_u, K, X, Y, Z)``.
        teacher_feat_u: teacher features of the unlabeled images ``(B_u, C, X, Y, Z)``.
        scale: the cosine scale ``s`` (20 in the paper).
    """
    proto_l, _ = class_prototypes(feat_l, label_l, prob_l)
    proto_u, _ = class_prototypes(teacher_feat_u, class_argmax(teacher_prob_u), teacher_prob_u)
    if prob_l.shape[1] == 2:
        return _two_class(feat_l, label_l, feat_u, teacher_prob_u, proto_l, proto_u, scale)
    return _any_classes(feat_l, label_l, feat_u, teacher_prob_u, proto_l, proto_u, scale)


def _any_classes(feat_l, label_l, feat_u, teacher_prob_u, proto_l, proto_u, scale) -> PCLResult:
    # on (B, N, K) voxel rows: softmax and cross-entropy over a contiguous class axis are
    # several times faster on CPU than over dim 1 of a channels-last view
    n_classes = proto_l.shape[0]
    l2u_rows = torch.softmax(prototype_scores(feat_u, proto_l, scale), dim=-1)  # (B_u, N, K)
    l2u = torch.mean((l2u_rows - voxel_rows(widen(teacher_prob_u.detach()))) ** 2)
    u2l_scores = prototype_scores(feat_l, proto_u, scale)  # (B_l, N, K)
    u2l = F.cross_entropy(u2l_scores.reshape(-1, n_classes), label_l.reshape(-1))
    l2u_probs = l2u_rows.reshape(feat_u.shape[0], *feat_u.shape[2:], n_classes).permute(0, 4, 1, 2, 3)
    return PCLResult(l2u=l2u, u2l=u2l, l2u_probs=l2u_probs)


def _two_class(feat_l, label_l, feat_u, teacher_prob_u, proto_l, proto_u, scale) -> PCLResult:
    """The same losses for K = 2 through the score margin ``d = s1 - s0``: softmax is
    ``sigmoid(d)``, the MSE over both classes equals that of the foreground alone, and the
    cross-entropy is the binary one on ``d``. One dot product per voxel instead of two and no
    class-axis reductions: the PCL costs about half as much on CPU."""
    d_u = prototype_margin(feat_u, proto_l, scale)  # (B_u, N)
    p_u = torch.sigmoid(d_u)
    t_fg = widen(teacher_prob_u[:, 1].detach()).reshape(p_u.shape)
    l2u = torch.mean((p_u - t_fg) ** 2)
    d_l = prototype_margin(feat_l, proto_u, scale)  # (B_l, N)
    u2l = F.binary_cross_entropy_with_logits(d_l, label_l.reshape(d_l.shape).to(d_l.dtype))
    fg = p_u.detach().reshape(feat_u.shape[0], *feat_u.shape[2:])
    return PCLResult(l2u=l2u, u2l=u2l, l2u_probs=torch.stack([1 - fg, fg], dim=1))
