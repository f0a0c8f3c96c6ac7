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

from cvcl.losses.prototype import class_argmax, class_prototypes, prototype_logits


@dataclass
class PCLResult:
    l2u: torch.Tensor          # scalar
    u2l: torch.Tensor          # scalar
    l2u_probs: torch.Tensor    # (B_u, K, X, Y, Z) prototype prediction of the unlabeled voxels


def pcl_losses(feat_l: torch.Tensor, label_l: torch.Tensor, prob_l: torch.Tensor,
               feat_u: torch.Tensor, teacher_prob_u: torch.Tensor, teacher_feat_u: torch.Tensor,
               scale: float) -> PCLResult:
    """Both PCL terms.

    Args:
        feat_l: student features of the labeled images ``(B_l, C, X, Y, Z)`` (on the label grid).
        label_l: ground truth ``(B_l, X, Y, Z)`` int64.
        prob_l: student softmax of the labeled images ``(B_l, K, X, Y, Z)``.
        feat_u: student features of the unlabeled images ``(B_u, C, X, Y, Z)``.
        teacher_prob_u: teacher softmax of the unlabeled images ``(B_u, K, X, Y, Z)``.
        teacher_feat_u: teacher features of the unlabeled images ``(B_u, C, X, Y, Z)``.
        scale: the cosine scale ``s`` (20 in the paper).
    """
    proto_l, _ = class_prototypes(feat_l, label_l, prob_l)
    l2u_probs = torch.softmax(prototype_logits(feat_u, proto_l, scale).float(), dim=1)
    l2u = torch.mean((l2u_probs - teacher_prob_u.detach().float()) ** 2)

    proto_u, _ = class_prototypes(teacher_feat_u, class_argmax(teacher_prob_u), teacher_prob_u)
    u2l = F.cross_entropy(prototype_logits(feat_l, proto_u, scale).float(), label_l)
    return PCLResult(l2u=l2u, u2l=u2l, l2u_probs=l2u_probs)
