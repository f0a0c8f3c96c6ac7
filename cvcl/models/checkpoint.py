"""Saving and loading trained networks (``models/model.pt``)."""

from __future__ import annotations

from pathlib import Path

import torch

from cvcl.errors import DataError
from cvcl.io.atomic import atomic_path
from cvcl.models.config import ModelConfig, build_model
from cvcl.models.vnet import VNet

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, student: VNet, teacher: VNet | None, model_cfg: ModelConfig, meta: dict) -> None:
    """Write student and teacher weights with what is needed to rebuild them (atomically)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": model_cfg.as_dict(),
        "student": {k: v.detach().cpu() for k, v in student.state_dict().items()},
        "teacher": ({k: v.detach().cpu() for k, v in teacher.state_dict().items()} if teacher is not None else None),
        "meta": meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, weights: str = "student", device: torch.device | str = "cpu") -> tuple[VNet, dict]:
    """Rebuild the network of a checkpoint in eval mode; returns ``(model, checkpoint meta)``,
    the meta holding ``model_config`` as well.

    ``weights`` is ``"student"`` or ``"teacher"`` (the EMA model of semi-supervised methods).
    The projection head is dropped: inference does not need it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found; run the train stage first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"is not a readable checkpoint ({type(exc).__name__})") from None
    state = payload.get(weights)
    if state is None:
        raise DataError(path, f"holds no {weights} weights (method {payload['meta'].get('method')!r})")
    cfg = ModelConfig(**payload["model_config"])
    model = build_model(cfg, with_projection=False)
    state = {k: v for k, v in state.items() if not k.startswith("projection.")}
    model.load_state_dict(state)
    return model.to(device).eval(), {**payload["meta"], "model_config": cfg.as_dict()}
