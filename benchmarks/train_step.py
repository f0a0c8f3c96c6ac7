"""Time of one training iteration per method, on the same inputs, in one run.

    python benchmarks/train_step.py [--patch 48 48 32] [--filters 8] [--norm instance] [--repeats 12]
                                    [--no-amp] [--no-channels-last]

Each method runs the trainer's own iteration (``cvcl.training.step.TrainStep``: forward under
autocast where ``train`` uses it, losses, backward through the AMP scaler, SGD step, EMA
update, channels_last on CUDA) on the same batch; methods are interleaved round by round so that drift in the machine's speed
hits all of them alike, and the median over rounds is reported. The last line is one JSON
object with the seconds per method and ``ratio_cvcl_vs_mean_teacher`` (target: at most 1.3 on
CPU, i.e. the CVCL terms add at most 30% to a mean-teacher step).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from cvcl import methods
from cvcl.device import configure_backend, select_device
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import LossConfig, Objective
from cvcl.training.step import TrainStep

# the methods the ratio compares and the supervised floor (ua_mt's T teacher passes are not the
# question here); any of cvcl.methods.names() works
METHODS = ("supervised", "mean_teacher", "cvcl")


def make_step(method: str, cfg: ModelConfig, device: torch.device, images, labels, labeled_bs: int,
              split_bn: bool = False, amp: bool = True, channels_last: bool = True):
    semi = methods.get(method).semi_supervised  # ParamError for a name not in cvcl.methods
    objective = Objective(method, LossConfig(rampup_length=0.0, vcl_weight=0.6),
                          total_iterations=1000, split_bn=split_bn)
    torch.manual_seed(0)
    train_cfg = TrainConfig(iterations=1000, batch_size=images.shape[0], labeled_bs=labeled_bs,
                            patch=tuple(images.shape[-3:]), amp=amp, channels_last=channels_last)
    trainer = TrainStep(objective, cfg, train_cfg, device)
    # a supervised method trains on the labeled volumes only, as in the pipeline
    x, y = (images, labels) if semi else (images[:labeled_bs], labels[:labeled_bs])

    def step(t: int) -> None:
        trainer(x, y, t)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 32])
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--labeled-bs", type=int, default=2)
    ap.add_argument("--norm", choices=("instance", "batch", "none"), default="instance",
                    help="V-Net normalisation (instance: the CPU demo's default; batch: the paper's)")
    ap.add_argument("--split-bn", action="store_true", help="labeled and unlabeled halves in two forward passes")
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--no-amp", dest="amp", action="store_false", help="float32 on CUDA (AMP is train's default)")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = select_device(args.device)
    configure_backend(device)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, *args.patch, generator=g).to(device)
    labels = torch.zeros(args.batch, *args.patch, dtype=torch.long)
    c = [p // 2 for p in args.patch]
    labels[:, c[0] - 8:c[0] + 8, c[1] - 8:c[1] + 8, c[2] - 6:c[2] + 6] = 1
    labels = labels.to(device)
    cfg = ModelConfig(base_filters=args.filters, embed_dim=64, norm=args.norm)
    steps = {m: make_step(m, cfg, device, images, labels, args.labeled_bs, args.split_bn, args.amp,
                          args.channels_last) for m in METHODS}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for m in METHODS:  # warm-up (allocator, cuDNN autotuning)
        for t in range(2):
            steps[m](t)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(args.repeats):
        for m in METHODS:
            sync()
            start = time.perf_counter()
            steps[m](100 + r)
            sync()
            times[m].append(time.perf_counter() - start)
    seconds = {m: statistics.median(v) for m, v in times.items()}
    for m in METHODS:
        print(f"{m:<14} {seconds[m]:.3f} s/iteration (median of {args.repeats})")
    print(json.dumps({
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "patch": args.patch, "base_filters": args.filters, "batch": args.batch, "norm": args.norm,
        "split_bn": args.split_bn, "amp": args.amp and device.type == "cuda",
        "channels_last": args.channels_last and device.type == "cuda",
        "seconds_per_iteration": {m: round(s, 4) for m, s in seconds.items()},
        "ratio_cvcl_vs_mean_teacher": round(seconds["cvcl"] / seconds["mean_teacher"], 3),
    }))


if __name__ == "__main__":
    main()
