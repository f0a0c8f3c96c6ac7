"""Whole-case prediction: sliding window, optional flip TTA and largest-component cleanup, and
the infer stage's loop writing each test case's prediction in its source grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from tqdm import tqdm

from cvcl import workspace
from cvcl.device import amp_dtype, configure_backend, memory_format, select_device
from cvcl.entrypoint import raise_if_terminating
from cvcl.inference.config import InferConfig
from cvcl.inference.sliding_window import sliding_window_probs
from cvcl.io.resample import resize_probabilities
from cvcl.io.volume import Case, Grid, original_affine, read_case, to_original_grid, write_nifti
from cvcl.models.checkpoint import load_model
from cvcl.models.labels import class_argmax


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected foreground component of a binary mask."""
    labels, n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


# the in-plane flips (X, Y and both): the augmentations the network was trained with
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (0, 1))


def predict_volume(
    model: torch.nn.Module,
    image: np.ndarray,
    cfg: InferConfig,
    device: torch.device,
    amp: torch.dtype | None = None,
    memory_format=torch.contiguous_format,
    progress: bool = False,
    output_shape: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """Label map ``(X, Y, Z)`` uint8 (argmax of the averaged probabilities) of an image ``(C, X, Y, Z)``.

    ``cfg.tta_flip`` averages the probabilities of every window over :data:`TTA_FLIPS`;
    ``output_shape`` (a resampled case's source shape) resizes the probabilities trilinearly
    to that grid before the argmax (:mod:`cvcl.io.resample`'s convention);
    ``cfg.largest_component`` then keeps the largest 26-connected foreground component.
    """
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
    probs = sliding_window_probs(
        model,
        x,
        cfg.patch,
        cfg.stride,
        batch_size=cfg.batch_size,
        gaussian=cfg.gaussian,
        flips=TTA_FLIPS if cfg.tta_flip else ((),),
        amp=amp,
        memory_format=memory_format,
        progress=progress,
    )
    if output_shape is not None:
        probs = resize_probabilities(probs, output_shape)
    label = class_argmax(probs[None])[0].to(torch.uint8).cpu().numpy()
    del probs  # the (K, X, Y, Z) accumulator is not needed for the post-processing
    if cfg.largest_component and label.any():
        label = largest_component(label > 0).astype(np.uint8)
    return label


@dataclass
class Predictor:
    """A trained model ready on its device, with the inference settings it runs under and the
    checkpoint's ``meta`` (method, dataset, ``model_config``, ``preprocessing``...)."""

    model: torch.nn.Module
    cfg: InferConfig
    device: torch.device
    memory_format: torch.memory_format
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, model_file: Path, cfg: InferConfig, iteration: str = "chosen") -> Predictor:
        """The checkpoint's student or teacher (``cfg.weights``) on ``cfg.device``: the weights
        the run chose, or (``iteration="last"``) the last iteration's kept beside them."""
        model, meta = load_model(model_file, cfg.weights, iteration=iteration)
        return cls.on_device(model, cfg, meta, "infer.device")

    @classmethod
    def on_device(cls, model: torch.nn.Module, cfg: InferConfig, meta: dict, device_name: str) -> Predictor:
        """``model`` moved to ``cfg.device`` (``device_name`` is what an error about it names)."""
        device = select_device(cfg.device, device_name)
        configure_backend(device)
        fmt = memory_format(device, True)
        return cls(model.to(device, memory_format=fmt).eval(), cfg, device, fmt, meta)  # type: ignore[call-overload]  # torch's stubs lack memory_format on Module.to

    def amp(self) -> torch.dtype | None:
        return amp_dtype(self.device, self.cfg.amp)

    def segment(self, case: Case, grid: Grid = "network") -> np.ndarray:
        """The label map ``(X, Y, Z)`` uint8 of ``case.image`` ``(C, X, Y, Z)`` on ``grid``
        (:data:`cvcl.io.volume.Grid`): the network grid itself; the source grid (a resampled
        case's probabilities are resized to its source shape before the arg-max); or the
        original volume (the source-grid prediction put back where the crop took it, 0 around).

        The network is used in the mode it is in: :meth:`on_device` puts it in eval mode, a
        caller handing in a network being trained does so itself.
        """
        shape = None if grid == "network" else case.geometry.source_shape
        label = predict_volume(
            self.model, case.image, self.cfg, self.device, self.amp(), self.memory_format, output_shape=shape
        )
        return to_original_grid(label, case.geometry)[0] if grid == "original" else label

    def model_metadata(self) -> dict:
        """What a logged model carries for ``cvcl predict`` (:mod:`cvcl.tracking.model`)."""
        m = self.meta
        return {
            "format_version": 1,
            "method": m.get("method"),
            "dataset": m.get("dataset"),
            "seed": m.get("seed"),
            "iterations": m.get("iterations"),
            "labeled": len(m.get("labeled") or []),
            "weights": self.cfg.weights,
            "model_config": m["model_config"],
            "preprocessing": m.get("preprocessing"),
            "inference": self.cfg.window_settings(),
        }

    def write_predictions(self, case_ids: list[str], processed: Path, out: Path, progress: bool = True) -> None:
        """Write ``out/<case_id>.nii.gz`` for each processed case.

        Each prediction lands in its case's source grid (original spacing, shape and affine:
        a resampled case is predicted back onto its source resolution, a crop is undone), so
        it overlays the original image in ITK-SNAP or 3D Slicer and is scored in the
        published tables' units.
        """
        for case_id in tqdm(case_ids, desc="infer", unit="case", disable=not progress):
            raise_if_terminating()
            case = read_case(workspace.case_file(case_id, processed))
            write_nifti(out / f"{case_id}.nii.gz", self.segment(case, "original"), original_affine(case.geometry))
