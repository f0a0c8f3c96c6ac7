"""The training objective: the part every method shares, and its method's terms.

    L = L_sup + (the method's unsupervised terms, scaled by w(t) and their weights)

The generic part is here: the student's forward pass (optionally ``split_bn``), the supervised
loss, the sigmoid consistency ramp ``w(t)`` and the teacher's forward pass on the noisy
unlabeled volumes. The terms of each method (mean teacher, UA-MT, CVCL's PCL and VCL) are
declared and computed by its module in :mod:`cvcl.methods`. Setting a term's weight to 0
removes the term *and* its computation, so ``cvcl`` with ``pcl_weight = vcl_weight = 0`` is
exactly ``mean_teacher``.
"""

from __future__ import annotations

from dataclasses import fields

import torch
import torch.nn as nn

from cvcl import methods
from cvcl.losses.consistency import consistency_weight, teacher_input_noise
from cvcl.losses.supervised import supervised_loss
from cvcl.methods import LossConfig
from cvcl.models.vnet import VNetOutput


class Objective:
    """Computes the loss terms of one batch for a method (a name in :func:`cvcl.methods.names`).

    Call with the student, the teacher (None for ``supervised``), the batch
    ``images (B, C, X, Y, Z)``, ``labels (B, X, Y, Z)`` of which the first ``n_labeled`` are
    real, and the 0-based iteration. Returns ``(total, terms)`` where ``terms`` maps the names
    of the computed terms (``loss_sup`` and the method's active terms, see
    :meth:`cvcl.methods.Method.active_terms`) to detached scalars, and, for semi-supervised
    methods on batches with unlabeled volumes, ``consistency_weight`` to the ramp value w(t).

    With ``split_bn`` the student sees the labeled and the unlabeled images in two forward
    passes, so that BatchNorm normalises each half by its own batch statistics: the labeled
    half then trains exactly as in the supervised baseline, and the unlabeled volumes reach
    the student only through the unsupervised terms (README: "Results on the synthetic
    default" shows what the shared statistics cost).
    """

    def __init__(
        self, method: str, cfg: LossConfig, total_iterations: int, n_classes: int = 2, split_bn: bool = False
    ) -> None:
        self.spec = methods.get(method)  # ParamError naming the methods when unknown
        self.method, self.cfg, self.total, self.n_classes = method, cfg, total_iterations, n_classes
        self.split_bn = split_bn
        self._values = cfg.as_params()

    @property
    def ramp_iterations(self) -> float:
        """The iterations the consistency ramp spans: ``loss.rampup_length`` of the run."""
        return self.cfg.rampup_length * self.total

    @property
    def ramp_start(self) -> int:
        """The first iteration with ``w(t) > 0``: ``loss.rampup_start`` of the run."""
        return round(self.cfg.rampup_start * self.total)

    @property
    def ramp_end(self) -> float:
        """The iteration from which ``w(t)`` holds its maximum (the teacher's late EMA decay
        starts there, ``train.ema_decay_late``)."""
        return self.ramp_start + self.ramp_iterations

    @property
    def needs_teacher(self) -> bool:
        return self.spec.semi_supervised

    @property
    def needs_projection(self) -> bool:
        return self.spec.needs_projection(self._values)

    def _student(self, student: nn.Module, images: torch.Tensor, n_labeled: int) -> VNetOutput:
        if self.cfg.student_noise > 0 and 0 < n_labeled < images.shape[0]:
            # the unlabeled half only: the labeled half trains as in the supervised baseline
            noisy = teacher_input_noise(images[n_labeled:], self.cfg.student_noise)
            images = torch.cat([images[:n_labeled], noisy])
        if not self.split_bn or not 0 < n_labeled < images.shape[0]:
            return student(images)
        halves = (student(images[:n_labeled]), student(images[n_labeled:]))
        return VNetOutput(**{f.name: torch.cat([getattr(h, f.name) for h in halves]) for f in fields(VNetOutput)})

    def __call__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        images: torch.Tensor,
        labels: torch.Tensor,
        n_labeled: int,
        step: int,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        out = self._student(student, images, n_labeled)
        logits = out.logits.float()
        sup = supervised_loss(logits[:n_labeled], labels[:n_labeled])
        terms = {methods.SUPERVISED_TERM.name: sup.detach()}
        if not self.needs_teacher or n_labeled == images.shape[0]:
            return sup, terms
        assert teacher is not None, f"{self.method} needs a teacher"

        w = consistency_weight(step, cfg.consistency, cfg.rampup_epochs, self.ramp_iterations, self.ramp_start)
        terms["consistency_weight"] = torch.tensor(w, device=logits.device)
        with torch.no_grad():
            t_out = teacher(teacher_input_noise(images[n_labeled:], cfg.teacher_noise))
        batch = methods.Batch(
            cfg=cfg,
            values=self._values,
            student=student,
            teacher=teacher,
            out=out,
            logits=logits,
            t_out=t_out,
            t_logits=t_out.logits.float(),
            images=images,
            labels=labels,
            n_labeled=n_labeled,
            step=step,
            w=w,
            total_iterations=self.total,
            n_classes=self.n_classes,
            total=sup,
            terms=terms,
        )
        self.spec.add_terms(batch)
        return batch.total, batch.terms
