"""The training objective of each method, built from separately weighted terms.

    L = L_sup
        + mt_weight  * w(t) * MSE(student, teacher)            (mean_teacher, cvcl)
        + w(t) * masked MSE                                    (ua_mt)
        + pcl_weight * w(t) * (L2U + U2L)                      (cvcl)
        + vcl_weight * (L_VCL(labeled) + w(t) * L_VCL(unlabeled))   (cvcl)

``w(t)`` is the sigmoid consistency ramp. Setting a weight to 0 removes its term *and* its
computation, so ``cvcl`` with ``pcl_weight = vcl_weight = 0`` is exactly ``mean_teacher``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from cvcl.losses.consistency import consistency_weight, softmax_mse
from cvcl.losses.pcl import pcl_losses
from cvcl.losses.prototype import (class_argmax, class_prototypes, full_precision, prototype_logits,
                                   upsample_to)
from cvcl.losses.supervised import supervised_loss
from cvcl.losses.uncertainty import masked_consistency, teacher_uncertainty, uncertainty_threshold
from cvcl.losses.vcl import gather_features, sample_anchors, supervised_infonce
from cvcl.models.vnet import VNetOutput
from cvcl.settings import default

METHODS = ("supervised", "mean_teacher", "ua_mt", "cvcl")
SEMI_SUPERVISED = ("mean_teacher", "ua_mt", "cvcl")
FEATURE_TAPS = ("center", "d9")


@dataclass(frozen=True)
class LossConfig:
    """Weights and settings of the loss terms (``loss`` in params.yaml)."""

    consistency: float = default("loss.consistency")        # maximum of the ramp w(t)
    rampup_epochs: float = default("loss.rampup_epochs")     # R: ramp length in "epochs"
    iters_per_epoch: int = default("loss.iters_per_epoch")      # iterations per ramp "epoch"
    mt_weight: float = default("loss.mt_weight")          # mean-teacher softmax MSE
    pcl_weight: float = default("loss.pcl_weight")         # class-level prototype consistency
    vcl_weight: float = default("loss.vcl_weight")         # voxel-level contrast
    teacher_noise: float = default("loss.teacher_noise")      # std of the Gaussian noise on the teacher's input
    temperature: float = default("loss.temperature")        # InfoNCE temperature tau
    n_anchor: int = default("loss.n_anchor")             # anchors per image and class
    proto_scale: float = default("loss.proto_scale")       # s in softmax(s * cos)
    prototype_feature: str = default("loss.prototype_feature")  # feature tap the prototypes pool
    uamt_passes: int = default("loss.uamt_passes")            # T noisy teacher passes for UA-MT


class Objective:
    """Computes the loss terms of one batch for a method.

    Call with the student, the teacher (None for ``supervised``), the batch
    ``images (B, C, X, Y, Z)``, ``labels (B, X, Y, Z)`` of which the first ``n_labeled`` are
    real, and the 0-based iteration. Returns ``(total, terms)`` where ``terms`` maps the names
    of the computed terms (``loss_sup``, ``loss_mt``, ``loss_uamt``, ``loss_pcl_l2u``,
    ``loss_pcl_u2l``, ``loss_vcl_l``, ``loss_vcl_u``) to detached scalars, and
    ``consistency_weight`` to the current ramp value w(t).

    With ``split_bn`` the student sees the labeled and the unlabeled images in two forward
    passes, so that BatchNorm normalises each half by its own batch statistics: the labeled
    half then trains exactly as in the supervised baseline, and the unlabeled volumes reach
    the student only through the unsupervised terms (README: "Results on the synthetic
    default" shows what the shared statistics cost).
    """

    def __init__(self, method: str, cfg: LossConfig, total_iterations: int, n_classes: int = 2,
                 split_bn: bool = False) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method, self.cfg, self.total, self.n_classes = method, cfg, total_iterations, n_classes
        self.split_bn = split_bn
        cvcl = method == "cvcl"
        self.use_mt = method in ("mean_teacher", "cvcl") and cfg.mt_weight > 0
        self.use_pcl = cvcl and cfg.pcl_weight > 0
        self.use_vcl = cvcl and cfg.vcl_weight > 0

    @property
    def needs_teacher(self) -> bool:
        return self.method in SEMI_SUPERVISED

    @property
    def needs_projection(self) -> bool:
        return self.use_vcl

    def _teacher_input(self, images: torch.Tensor) -> torch.Tensor:
        noise = self.cfg.teacher_noise
        if noise <= 0:
            return images
        return images + torch.clamp(torch.randn_like(images) * noise, -2 * noise, 2 * noise)

    def _prototype_features(self, out, size, images: slice = slice(None)) -> torch.Tensor:
        tap = out.center if self.cfg.prototype_feature == "center" else out.d9
        return upsample_to(tap[images].float(), size)

    def _student(self, student: nn.Module, images: torch.Tensor, n_labeled: int) -> VNetOutput:
        if not self.split_bn or not 0 < n_labeled < images.shape[0]:
            return student(images)
        halves = (student(images[:n_labeled]), student(images[n_labeled:]))
        return VNetOutput(**{f.name: torch.cat([getattr(h, f.name) for h in halves]) for f in fields(VNetOutput)})

    def __call__(self, student: nn.Module, teacher: nn.Module | None, images: torch.Tensor,
                 labels: torch.Tensor, n_labeled: int, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        out = self._student(student, images, n_labeled)
        logits = out.logits.float()
        sup = supervised_loss(logits[:n_labeled], labels[:n_labeled])
        total = sup
        terms = {"loss_sup": sup.detach()}
        if not self.needs_teacher or n_labeled == images.shape[0]:
            return total, terms

        w = consistency_weight(step, cfg.consistency, cfg.rampup_epochs, cfg.iters_per_epoch)
        terms["consistency_weight"] = torch.tensor(w, device=logits.device)
        x_u = images[n_labeled:]
        with torch.no_grad():
            t_out = teacher(self._teacher_input(x_u))
        t_logits = t_out.logits.float()

        if self.use_mt:
            mt = softmax_mse(logits[n_labeled:], t_logits)
            total = total + cfg.mt_weight * w * mt
            terms["loss_mt"] = mt.detach()
        if self.method == "ua_mt":
            uncertainty = teacher_uncertainty(teacher, x_u, cfg.uamt_passes, max(cfg.teacher_noise, 1e-6),
                                              chunk=min(cfg.uamt_passes, 4))
            threshold = uncertainty_threshold(step, self.total, self.n_classes)
            uamt = masked_consistency(logits[n_labeled:], t_logits, uncertainty, threshold)
            total = total + w * uamt
            terms["loss_uamt"] = uamt.detach()
        if not (self.use_pcl or self.use_vcl):
            return total, terms
        # The prototype terms pool and compare features over millions of voxels: float32 only
        # (float16 overflows there; see cvcl/losses/prototype.py and docs/method.md).
        with full_precision(logits.device):
            total = self._prototype_terms(student, out, t_out, logits, t_logits, labels, n_labeled, w, total, terms)
        return total, terms

    def _prototype_terms(self, student, out, t_out, logits, t_logits, labels, n_labeled, w, total, terms):
        cfg = self.cfg
        size = tuple(labels.shape[-3:])
        probs = torch.softmax(logits, dim=1)
        t_probs = torch.softmax(t_logits, dim=1)
        # upsampled per half: slicing one upsampled batch would cost two full-size zero-filled
        # gradient buffers in the backward
        feat_l = self._prototype_features(out, size, slice(None, n_labeled))
        feat_u = self._prototype_features(out, size, slice(n_labeled, None))
        label_l = labels[:n_labeled]
        if self.use_pcl:
            pcl = pcl_losses(feat_l, label_l, probs[:n_labeled].detach(), feat_u,
                             t_probs, self._prototype_features(t_out, size), cfg.proto_scale)
            total = total + cfg.pcl_weight * w * (pcl.l2u + pcl.u2l)
            terms["loss_pcl_l2u"], terms["loss_pcl_u2l"] = pcl.l2u.detach(), pcl.u2l.detach()
            reference_u = class_argmax(pcl.l2u_probs.detach())
        if self.use_vcl:
            if not self.use_pcl:  # VCL still needs the prototype prediction of the unlabeled voxels
                with torch.no_grad():
                    proto_l, _ = class_prototypes(feat_l, label_l, probs[:n_labeled])
                    reference_u = class_argmax(prototype_logits(feat_u, proto_l, cfg.proto_scale))
            prediction = class_argmax(logits.detach())
            vcl_l = self._contrast(student, out.d9[:n_labeled], label_l, prediction[:n_labeled])
            vcl_u = self._contrast(student, out.d9[n_labeled:], reference_u, prediction[n_labeled:])
            total = total + cfg.vcl_weight * (vcl_l + w * vcl_u)
            terms["loss_vcl_l"], terms["loss_vcl_u"] = vcl_l.detach(), vcl_u.detach()
        return total

    def _contrast(self, student: nn.Module, d9: torch.Tensor, reference: torch.Tensor,
                  prediction: torch.Tensor) -> torch.Tensor:
        anchors = sample_anchors(reference, prediction, self.n_classes, self.cfg.n_anchor)
        features, classes, valid = gather_features(d9, anchors)           # (M, f)
        features = features.float()
        # The head is 1x1x1 convolutions: applying it to the gathered voxels only is the same
        # as projecting the whole volume and gathering after, at a fraction of the cost.
        embeddings = student.project(features.T[None, :, :, None, None])[0, :, :, 0, 0].T
        return supervised_infonce(embeddings, classes, valid, self.cfg.temperature)
