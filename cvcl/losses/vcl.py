"""VCL: voxel-level prototype-guided contrast.

For each image two labelings of its voxels are compared: a reference ``y`` (ground truth for
labeled images, the prototype prediction for unlabeled ones) and the network's own prediction
``y_hat``. Voxels where they disagree are *hard* (the boundary band, missed or false
foreground), the others *easy*. Per image and class at most ``n`` anchors are drawn, half hard
and half easy, one pool topping up the other when it is short. A supervised InfoNCE over the
projected embeddings of all anchors then pulls same-class voxels together and pushes the
other class away.

Everything works on the whole batch at once: sampling is a masked top-k over random scores
(no host synchronisation), and the loss is one similarity matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_NEG = -1e4  # stands in for -inf in masked log-sum-exps; keeps gradients finite

# The reference's contrast loss (PixelContrastLoss in github:maybeQi/Voxel-Contrastive) divides
# its similarities by ``base_temperature`` 0.1, the real temperature, and then returns the
# negative mean log-probability divided by its ``temperature`` 20: an InfoNCE / 20. Its training
# script weights that by 0.6. ``loss.vcl_weight`` is read in those units, so the objective adds
# ``vcl_weight * REFERENCE_SCALE * InfoNCE`` (docs/method.md: "Weights").
REFERENCE_SCALE = 1.0 / 20.0


@dataclass
class Anchors:
    """Sampled voxels: ``index`` into the flattened volume, shape ``(B, K, n)`` int64;
    ``valid`` marks the drawn ones (at most ``n`` per image and class); ``hard`` marks
    the hard ones, which come first within each ``(b, k)`` row."""

    index: torch.Tensor
    valid: torch.Tensor
    hard: torch.Tensor

    @property
    def n_classes(self) -> int:
        return self.index.shape[1]


def sample_anchors(
    reference: torch.Tensor, prediction: torch.Tensor, n_classes: int, n: int, generator: torch.Generator | None = None
) -> Anchors:
    """Draw at most ``n`` anchors per image and class, half hard, half easy, topped up.

    Args:
        reference: ``(B, X, Y, Z)`` int64 reference labeling ``y``.
        prediction: ``(B, X, Y, Z)`` int64 network prediction ``y_hat``.
    """
    b = reference.shape[0]
    ref = reference.reshape(b, 1, -1)
    pred = prediction.reshape(b, 1, -1)
    classes = torch.arange(n_classes, device=reference.device).view(1, -1, 1)
    in_class = ref == classes  # (B, K, N)
    hard = in_class & (pred != classes)
    easy = in_class & (pred == classes)
    n_hard, n_easy = hard.sum(-1), easy.sum(-1)  # (B, K)
    take_hard = torch.minimum(n_hard, torch.clamp(n - n_easy, min=n // 2))
    take_easy = torch.minimum(n_easy, n - take_hard)

    k = min(n, ref.shape[-1])
    scores = torch.rand(in_class.shape, device=reference.device, generator=generator)
    idx_hard = torch.where(hard, scores, -1.0).topk(k, dim=-1).indices
    idx_easy = torch.where(easy, scores, -1.0).topk(k, dim=-1).indices
    # One row of k slots per (image, class): the first take_hard slots from the hard draw, the
    # next take_easy from the easy draw. Merging by a gather keeps the rows compact (half the
    # anchors of concatenating both draws, a quarter of the similarity matrix) without a sync.
    rank = torch.arange(k, device=reference.device).view(1, 1, -1).expand_as(idx_hard)
    th = take_hard.unsqueeze(-1)
    from_easy = idx_easy.gather(-1, torch.clamp(rank - th, min=0))
    index = torch.where(rank < th, idx_hard, from_easy)
    return Anchors(index=index, valid=rank < th + take_easy.unsqueeze(-1), hard=rank < th)


def gather_features(features: torch.Tensor, anchors: Anchors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of the anchors: ``(M, C)`` with their class ``(M,)`` and validity ``(M,)``,
    ``M = B * K * n``, for features ``(B, C, X, Y, Z)``."""
    b, c = features.shape[:2]
    index = anchors.index.reshape(b, 1, -1).expand(b, c, -1)
    picked = features.reshape(b, c, -1).gather(2, index)  # (B, C, K*n)
    classes = torch.arange(anchors.n_classes, device=features.device).view(1, -1, 1).expand_as(anchors.index)
    return picked.permute(0, 2, 1).reshape(-1, c), classes.reshape(-1), anchors.valid.reshape(-1)


def supervised_infonce(
    embeddings: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """Supervised InfoNCE over unit embeddings ``(M, E)`` with classes ``(M,)``.

    For anchor ``i`` and each positive ``p`` (same class, not ``i``), the loss is
    ``-log(exp(s_ip) / (exp(s_ip) + sum_n exp(s_in)))`` over the negatives ``n`` (other class),
    with ``s = cos / temperature``; it is averaged over positives, then over the anchors that
    have at least one positive. Returns 0 (still attached to the graph) when no anchor has one.
    """
    emb = embeddings.float()
    sim = emb @ emb.T / temperature
    both = valid[:, None] & valid[None, :]
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    positive = same & both & ~eye
    negative = ~same & both
    neg_lse = torch.logsumexp(sim.masked_fill(~negative, _NEG), dim=1, keepdim=True)  # (M, 1)
    per_pair = F.softplus(neg_lse - sim)  # -log p(pos)
    n_pos = positive.sum(1)
    per_anchor = (per_pair * positive).sum(1) / n_pos.clamp_min(1)
    has_pos = n_pos > 0
    return (per_anchor * has_pos).sum() / has_pos.sum().clamp_min(1) + 0.0 * emb.sum()
