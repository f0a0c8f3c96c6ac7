"""The PCL prototype computation as it was before the coarse features were held coarse
(issue 20): features upsampled to the label grid, then pooled and compared voxel by voxel.

Frozen here as the reference that tests/test_upsampled.py holds today's code to. The one change
from the code of that time: it computes in float64 when given float64 (it cast everything to
float32), so that the comparison can be made to float64 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _wide(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


def upsample_to(features: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    features = features.contiguous(memory_format=torch.channels_last_3d)
    if tuple(features.shape[-3:]) == tuple(size):
        return features
    return F.interpolate(features, size=size, mode="trilinear", align_corners=False)


def voxel_rows(features: torch.Tensor) -> torch.Tensor:
    b, c = features.shape[:2]
    return features.permute(0, 2, 3, 4, 1).reshape(b, -1, c)


@torch.no_grad()
def class_prototypes(features, classes, confidence, eps=1e-5):
    n_classes = confidence.shape[1]
    rows = _wide(voxel_rows(features))
    member = classes.reshape(classes.shape[0], 1, -1) == torch.arange(n_classes).view(1, -1, 1)
    weights = confidence.reshape(*confidence.shape[:2], -1).to(rows.dtype) * member
    summed = torch.bmm(weights, rows).sum(0)
    mass = weights.sum(dim=(0, 2))
    return summed / mass.clamp_min(eps)[:, None], mass > eps


def prototype_scores(features, prototypes, scale):
    rows = _wide(voxel_rows(features))
    p = F.normalize(_wide(prototypes), dim=1)
    norms = torch.linalg.vector_norm(rows, dim=-1, keepdim=True).clamp_min(1e-12)
    return (rows @ (scale * p).T) / norms


def prototype_margin(features, prototypes, scale):
    rows = _wide(voxel_rows(features))
    p = F.normalize(_wide(prototypes.detach()), dim=1)
    delta = scale * (p[1] - p[0])
    return (rows @ delta) / torch.linalg.vector_norm(rows, dim=-1).clamp_min(1e-12)


def pcl_losses(feat_l, label_l, prob_l, feat_u, teacher_prob_u, teacher_feat_u, scale):
    """``(l2u, u2l, l2u_probs)`` of upsampled (label-grid) features, as the code of that time."""
    proto_l, _ = class_prototypes(feat_l, label_l, prob_l)
    proto_u, _ = class_prototypes(teacher_feat_u, teacher_prob_u.argmax(1), teacher_prob_u)
    n_classes = proto_l.shape[0]
    if n_classes == 2:
        d_u = prototype_margin(feat_u, proto_l, scale)
        p_u = torch.sigmoid(d_u)
        l2u = torch.mean((p_u - _wide(teacher_prob_u[:, 1].detach()).reshape(p_u.shape)) ** 2)
        d_l = prototype_margin(feat_l, proto_u, scale)
        u2l = F.binary_cross_entropy_with_logits(d_l, label_l.reshape(d_l.shape).to(d_l.dtype))
        fg = p_u.detach().reshape(feat_u.shape[0], *feat_u.shape[2:])
        return l2u, u2l, torch.stack([1 - fg, fg], dim=1)
    l2u_rows = torch.softmax(prototype_scores(feat_u, proto_l, scale), dim=-1)
    l2u = torch.mean((l2u_rows - voxel_rows(_wide(teacher_prob_u.detach()))) ** 2)
    u2l_scores = prototype_scores(feat_l, proto_u, scale)
    u2l = F.cross_entropy(u2l_scores.reshape(-1, n_classes), label_l.reshape(-1))
    probs = l2u_rows.reshape(feat_u.shape[0], *feat_u.shape[2:], n_classes).permute(0, 4, 1, 2, 3)
    return l2u, u2l, probs
