"""Every parameter of params.yaml, declared once: its default, its type and range, and its help.

``params.yaml`` must agree with these defaults and hold no other key (tested); a key that is
not declared here stops the first stage that loads the params, with the closest valid name
(:func:`check_known`), so a misspelt key, in ``params.yaml`` or as ``dvc exp run -S +key=...``,
can never be ignored in silence. The typed configs (``TrainConfig``, ``LossConfig``,
``ModelConfig``, ``InferConfig``) take their defaults from here (:func:`default`), so code and
tests that build them without params.yaml run the same defaults users get.

``choices`` that name another module's registry (``"module:NAME"``, a sequence or a function
returning one) are looked up when used, so the registries stay the single place their members
are listed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping

from cvcl.errors import ParamError, closest


@dataclass(frozen=True)
class Setting:
    """One parameter. ``kind``: int, float, bool, str, choice, ints, floats, choices, path, spacing."""

    kind: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    length: int | None = None
    choices: tuple[str, ...] | str = ()
    optional: bool = False
    execution: bool = False  # where and how fast a stage runs, not what it computes

    def allowed(self) -> tuple[str, ...]:
        if isinstance(self.choices, str):
            module, name = self.choices.split(":")
            registry = getattr(importlib.import_module(module), name)
            return tuple(registry() if callable(registry) else registry)
        return self.choices


S = Setting
SETTINGS: dict[str, Setting] = {
    "dataset": S("choice", "synthetic-la", "which dataset", choices="cvcl.datasets:names"),
    "labeled": S("int", 4, "labeled training volumes: the first N of the training list", min=1),
    "seed": S("int", 1, "training seed (weights, sampling, augmentation)", min=0),
    "method": S("choice", "cvcl", "the training method (one module each in cvcl/methods)", choices="cvcl.methods:names"),
    "download.synthetic.n_train": S("int", 40, "synthetic-la: training volumes", min=2),
    "download.synthetic.n_test": S("int", 10, "synthetic-la: test volumes", min=1),
    "download.synthetic.shape": S("ints", [80, 72, 48], "synthetic-la: voxels X Y Z", min=16, length=3),
    "download.synthetic.spacing": S("floats", [1.25, 1.25, 1.25], "synthetic-la: mm", min=0, min_exclusive=True,
                                    length=3),
    "download.synthetic.seed": S("int", 2026, "synthetic-la: data seed", min=0),
    "download.synthetic_brats.n_train": S("int", 20, "synthetic-brats: training volumes", min=2),
    "download.synthetic_brats.n_val": S("int", 2, "synthetic-brats: validation volumes", min=0),
    "download.synthetic_brats.n_test": S("int", 6, "synthetic-brats: test volumes", min=1),
    "download.synthetic_brats.spacing": S("float", 3.0, "synthetic-brats: mm, isotropic", min=1.0, max=8.0),
    "download.synthetic_brats.seed": S("int", 2019, "synthetic-brats: data seed", min=0),
    "download.mirror": S("path", None, "la: a folder or http(s) URL base with the release's layout", optional=True),
    "download.local_path": S("path", None, "la-nrrd, brats2019, nifti: folder or archive", optional=True),
    "preprocess.modalities": S("choices", ["flair"], "brats: image channels in this order",
                               choices="cvcl.sources.layouts:BRATS_MODALITIES"),
    "preprocess.resample": S("spacing", None, "target spacing in mm (null: the source's)", optional=True),
    "preprocess.crop.margin_inplane": S("ints", [10, 20], "la-nrrd: in-plane crop margin [min, max)", length=2, min=0),
    "preprocess.crop.margin_through": S("ints", [5, 10], "la-nrrd: through-plane crop margin [min, max)", length=2,
                                        min=0, optional=True),
    "preprocess.crop.min_size": S("ints", [112, 112, 80], "la-nrrd: smallest crop, voxels", length=3, min=1),
    "preprocess.crop.seed": S("int", 0, "la-nrrd: crop draws", min=0),
    "split.strategy": S("choice", "protocol", "protocol (the dataset's lists) or random",
                        choices="cvcl.data.split:STRATEGIES"),
    "split.val": S("int", 0, "validation cases held out of the training list", min=0),
    "split.test_fraction": S("float", 0.2, "random strategy: test share", min=0.0, max=1.0, min_exclusive=True),
    "split.seed": S("int", 0, "random strategy: seed", min=0),
    "model.base_filters": S("int", 8, "f: channels of the first V-Net stage", min=1),
    "model.dropout": S("float", 0.5, "Dropout3d probability", min=0.0, max=0.95),
    "model.norm": S("choice", "instance", "instance, batch or none", choices="cvcl.models.vnet:NORMALIZATIONS"),
    "model.embed_dim": S("int", 64, "projection head output", min=1),
    "model.embed_hidden": S("int", 64, "projection head hidden width", min=1),
    "train.iterations": S("int", 1000, "training iterations", min=1),
    "train.batch_size": S("int", 4, "labeled + unlabeled volumes per step", min=1),
    "train.labeled_bs": S("int", 2, "labeled volumes per step", min=1),
    "train.patch": S("ints", [48, 48, 32], "voxels, each divisible by 16", length=3, min=16),
    "train.optimizer": S("choice", "sgd", "sgd or adam", choices=("sgd", "adam")),
    "train.lr": S("float", 0.01, "learning rate", min=0.0, min_exclusive=True),
    "train.momentum": S("float", 0.9, "SGD momentum (Adam: beta1)", min=0.0, max=1.0),
    "train.weight_decay": S("float", 0.0001, "weight decay", min=0.0),
    "train.lr_power": S("float", 0.9, "poly decay exponent", min=0.0),
    "train.ema_decay": S("float", 0.99, "teacher EMA decay", min=0.0, max=1.0),
    "train.workers": S("int", 0, "DataLoader worker processes", min=0, execution=True),
    "train.threads": S("int", 0, "torch CPU threads (0: torch's default)", min=0, execution=True),
    "train.device": S("str", "auto", "auto, cpu, cuda or cuda:N", execution=True),
    "train.amp": S("bool", True, "mixed precision (CUDA only)"),
    "train.channels_last": S("bool", True, "channels_last_3d memory format (CUDA only)"),
    "train.val_every": S("int", 0, "validate every N iterations (0: never)", min=0),
    "train.checkpoint": S("choice", "last", "last or best_val", choices=("last", "best_val")),
    "train.val_weights": S("choice", "student", "the network validation scores: student or teacher",
                           choices=("student", "teacher")),
    "train.split_bn": S("bool", False, "labeled and unlabeled halves in separate student passes"),
    "train.checkpoint_every": S("int", 100, "save the training state every N iterations (0: never)", min=0, execution=True),
    "train.deterministic": S("bool", False, "CUDA: reproducible kernels, no cuDNN autotuning", execution=True),
    "loss.consistency": S("float", 0.1, "maximum of the consistency ramp w(t)", min=0.0),
    "loss.rampup_epochs": S("float", 40, "R: steps of the ramp's staircase (the reference's epochs)", min=0.0),
    "loss.rampup_length": S("float", 1.0, "share of train.iterations the ramp spans (0: w(t) at its maximum from the start)",
                            min=0.0, max=1.0),
    "loss.mt_weight": S("float", 1.0, "mean-teacher softmax MSE", min=0.0),
    "loss.pcl_weight": S("float", 1.0, "class-level prototype consistency", min=0.0),
    "loss.vcl_weight": S("float", 1.0, "voxel-level contrast, reference units (x InfoNCE / 20)", min=0.0),
    "loss.teacher_noise": S("float", 0.1, "std of the noise on the teacher's input", min=0.0),
    "loss.temperature": S("float", 0.1, "VCL InfoNCE temperature", min=0.0, min_exclusive=True),
    "loss.n_anchor": S("int", 100, "VCL anchors per image and class", min=2),
    "loss.proto_scale": S("float", 20.0, "s in softmax(s cos(z, p))", min=0.0, min_exclusive=True),
    "loss.prototype_feature": S("choice", "center", "center or d9", choices="cvcl.methods.cvcl:FEATURE_TAPS"),
    "loss.uamt_passes": S("int", 8, "UA-MT noisy teacher passes", min=1),
    "infer.stride": S("ints", [16, 16, 8], "sliding-window step, voxels", length=3, min=1),
    "infer.batch_size": S("int", 4, "windows per forward pass", min=1),
    "infer.gaussian": S("bool", False, "Gaussian importance weighting"),
    "infer.tta_flip": S("bool", False, "average over X/Y flips"),
    "infer.largest_component": S("bool", False, "keep the largest connected component"),
    "infer.weights": S("choice", "student", "student or teacher", choices=("student", "teacher")),
    "infer.device": S("str", "auto", "auto, cpu, cuda or cuda:N", execution=True),
    "infer.amp": S("bool", True, "mixed precision (CUDA only)"),
    "evaluate.distance_unit": S("choice", "voxel", "voxel or mm", choices="cvcl.evaluation.summary:DISTANCE_UNITS"),
}
del S

# Parameters that choose where and how fast a stage runs: a resumed training may change them,
# and a comparison of runs does not tell configurations apart by them.
EXECUTION = frozenset(name for name, setting in SETTINGS.items() if setting.execution)


def default(name: str) -> Any:
    """The declared default of ``name`` (lists as tuples, for frozen dataclasses)."""
    value = SETTINGS[name].default
    return tuple(value) if isinstance(value, list) else value


def check_known(flat: Mapping[str, Any], source: str = "params.yaml") -> None:
    """Raise :class:`ParamError` for the first key of ``flat`` (dotted names) that is not declared."""
    for name, value in flat.items():
        if name not in SETTINGS:
            near = closest(name, SETTINGS)
            hint = f"; did you mean {near}?" if near else ""
            raise ParamError(name, value, f"a known parameter: {source} has no such key{hint}")
