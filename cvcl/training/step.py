"""One training iteration exactly as ``train`` runs it, and the guard against silent divergence.

:class:`TrainStep` owns the student, its EMA teacher, the optimiser and the AMP loss scaler
and performs forward (under autocast where enabled), the loss terms, backward, the optimiser
step and the EMA update. ``train`` and ``benchmarks/train_step.py`` both call it, so the
benchmark times the step users run (autocast, memory format, scaler included).

Values stay on the device: each call returns its total loss, terms, gradient norm and AMP
scale as tensors; :class:`DivergenceGuard` reads them when the trainer flushes its buffer.
"""

from __future__ import annotations

import math

import torch

from cvcl.device import amp_dtype, autocast, memory_format
from cvcl.errors import CvclError
from cvcl.models.config import ModelConfig, build_model
from cvcl.models.vnet import VNet
from cvcl.training.config import TrainConfig
from cvcl.training.ema import make_teacher, update_ema
from cvcl.training.objective import Objective
from cvcl.training.schedule import learning_rate


class TrainingDiverged(CvclError):
    """A loss term or the gradient became non-finite: training stops (the MLflow run FAILS)."""


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper), or Adam (``momentum`` is then beta1)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay
        )
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class TrainStep:
    """The networks and optimiser state of one training run, advanced one batch per call.

    Args:
        objective: the method's loss.
        model_cfg: the V-Net's shape.
        cfg: optimisation settings (lr schedule, AMP, channels_last, EMA decay).
        device: where the networks live; AMP and channels_last apply on CUDA only.
    """

    def __init__(self, objective: Objective, model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device) -> None:
        self.objective, self.cfg, self.device = objective, cfg, device
        self.format = memory_format(device, cfg.channels_last, cfg.precision)
        self.dtype = amp_dtype(device, cfg.amp, cfg.precision)
        with_head = objective.needs_projection
        self.student: VNet = build_model(model_cfg, with_head).to(device, memory_format=self.format).train()  # type: ignore[call-overload]  # torch's stubs lack memory_format on Module.to
        self.teacher: VNet | None = None
        if objective.needs_teacher:
            teacher = make_teacher(self.student, lambda: build_model(model_cfg, with_head))
            self.teacher = teacher.to(device, memory_format=self.format)  # type: ignore[call-overload]  # torch's stubs lack memory_format on Module.to
            self.teacher.train()  # batch statistics and dropout, as in UA-MT
        self.optimizer = make_optimizer(self.student, cfg)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self._params = [p for p in self.student.parameters() if p.requires_grad]

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, step: int) -> dict[str, torch.Tensor | float]:
        """One iteration on ``images (B, C, X, Y, Z)`` and ``labels (B, X, Y, Z)`` (first
        ``labeled_bs`` labeled). Returns detached 0-d tensors on the device: ``loss``, each
        term, ``grad_norm`` (of the unscaled gradient, before the step) and, with a float16
        scaler, ``amp_scale``; plus ``lr`` as a float."""
        c = self.cfg
        lr = learning_rate(c.lr_schedule, c.lr, step, c.iterations, c.lr_power, c.lr_step, c.lr_gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.format)
        labels = labels.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            total, terms = self.objective(self.student, self.teacher, images, labels, self.cfg.labeled_bs, step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self._params if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        scale = self._scale()
        self.scaler.step(self.optimizer)  # skipped by the scaler when a gradient is inf/NaN
        self.scaler.update()
        if self.teacher is not None:
            update_ema(self.teacher, self.student, self.ema_decay(step), step)
        values: dict[str, torch.Tensor | float] = {
            "loss": total.detach().float(),
            **{k: v.detach().float() for k, v in terms.items()},
            "grad_norm": grad_norm.detach().float(),
        }
        if scale is not None:
            values["amp_scale"] = scale
        values["lr"] = lr
        return values

    def ema_decay(self, step: int) -> float:
        """The teacher's EMA decay at ``step``: ``train.ema_decay``, then ``train.ema_decay_late``
        (where set) from the end of the consistency ramp, as the Mean Teacher paper's 0.99 during
        the ramp-up and 0.999 after: a teacher that averages over more steps once the student
        is trained on the full consistency weight."""
        late = self.cfg.ema_decay_late
        return self.cfg.ema_decay if late is None or step < self.objective.ramp_end else late

    def state_dict(self) -> dict:
        """Everything the next iteration depends on, except the random generators."""
        return {
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict() if self.teacher is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        if self.teacher is not None and state["teacher"] is not None:
            self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def _scale(self) -> torch.Tensor | None:
        """The loss scale as a device tensor (``GradScaler.get_scale`` would sync the host)."""
        if not self.scaler.is_enabled():
            return None
        scale = getattr(self.scaler, "_scale", None)  # not public API: fall back when it moves
        return scale.detach().clone().reshape(()) if torch.is_tensor(scale) else torch.tensor(self.scaler.get_scale())


class DivergenceGuard:
    """Stops training on a non-finite loss term or gradient, naming the step and the term.

    A non-finite loss term stops at once. A non-finite gradient stops at once in float32 and
    bfloat16; with the float16 loss scaler an overflowing gradient is expected now and then
    (the scaler skips that step and halves its scale), so only ``max_skipped`` consecutive
    skipped steps stop training: by then the scale has fallen by 2^max_skipped and the
    network no longer learns, which is how the CVCL collapse on real LA went unnoticed.
    """

    def __init__(self, scaled: bool, max_skipped: int = 20) -> None:
        self.scaled, self.max_skipped, self.skipped = scaled, max_skipped, 0

    def check(self, step: int, record: dict[str, float]) -> None:
        # a term first: the total is non-finite whenever one of its terms is
        names = sorted((k for k in record if k.startswith("loss")), key=lambda k: k == "loss")
        for name in names:
            value = record[name]
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"train: step {step}: loss term {name} = {value} (non-finite); training stopped. "
                    f"Terms at this step: {_terms(record)}"
                )
        if math.isfinite(record.get("grad_norm", 0.0)):
            self.skipped = 0
            return
        self.skipped += 1
        if not self.scaled or self.skipped >= self.max_skipped:
            why = (
                f" for {self.skipped} consecutive steps (AMP loss scale now {record.get('amp_scale', 0):.3g})"
                if self.scaled
                else ""
            )
            raise TrainingDiverged(
                f"train: step {step}: the total gradient is non-finite{why}, though every loss "
                f"term is finite; training stopped. Terms: {_terms(record)}"
            )


def _terms(record: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k.startswith("loss"))
