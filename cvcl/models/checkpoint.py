"""Saving and loading trained networks (``models/model.pt``)."""

from __future__ import annotations

from pathlib import Path

import torch

from cvcl.errors import DataError
from cvcl.io.atomic import atomic_path
from cvcl.models.config import ModelConfig, build_model
from cvcl.models.vnet import VNet

FORMAT_VERSION = 1


# which weights of a checkpoint: those the run chose (the last iteration's, or the best validation's
# with train.checkpoint: best_val), or the last iteration's kept beside an earlier best
ITERATIONS = ("chosen", "last")


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def save_checkpoint(
    path: str | Path,
    student: VNet,
    teacher: VNet | None,
    model_cfg: ModelConfig,
    meta: dict,
    last: dict | None = None,
) -> None:
    """Write student and teacher weights with what is needed to rebuild them (atomically).

    ``last`` (``{"step", "student", "teacher"}`` state dicts) keeps the last iteration's weights
    beside the chosen ones when a ``best_val`` run chose an earlier step; its step goes to
    ``meta["last_step"]``."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": model_cfg.as_dict(),
        "student": _cpu(student.state_dict()),
        "teacher": _cpu(teacher.state_dict()) if teacher is not None else None,
        "meta": meta,
    }
    if last is not None:
        payload["last"] = {
            "student": _cpu(last["student"]),
            "teacher": _cpu(last["teacher"]) if last.get("teacher") is not None else None,
        }
        payload["meta"] = {**meta, "last_step": last["step"]}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "not found; run the train stage first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(path, f"is not a readable checkpoint ({type(exc).__name__})") from None


def holds_last(path: str | Path) -> bool:
    """Whether the checkpoint keeps the last iteration's weights beside earlier chosen ones."""
    return _read(Path(path)).get("last") is not None


def load_model(
    path: str | Path, weights: str = "student", device: torch.device | str = "cpu", iteration: str = "chosen"
) -> tuple[VNet, dict]:
    """Rebuild the network of a checkpoint in eval mode; returns ``(model, checkpoint meta)``,
    the meta holding ``model_config`` as well.

    ``weights`` is ``"student"`` or ``"teacher"`` (the EMA model of semi-supervised methods);
    ``iteration`` is ``"chosen"`` (the weights the run kept) or ``"last"`` (the last iteration's,
    held beside an earlier best validation step: :func:`holds_last`).
    The projection head is dropped: inference does not need it.
    """
    path = Path(path)
    payload = _read(path)
    if iteration == "last":
        if payload.get("last") is None:
            raise DataError(path, "holds no separate last-iteration weights (its chosen weights are the last)")
        payload = {**payload, **payload["last"]}
    state = payload.get(weights)
    if state is None:
        raise DataError(path, f"holds no {weights} weights (method {payload['meta'].get('method')!r})")
    cfg = ModelConfig(**payload["model_config"])
    model = build_model(cfg, with_projection=False)
    state = {k: v for k, v in state.items() if not k.startswith("projection.")}
    model.load_state_dict(state)
    return model.to(device).eval(), {**payload["meta"], "model_config": cfg.as_dict()}
