"""Sliding-window inference: ours, MONAI's ``sliding_window_inference`` and a plain loop, in one run.

    python benchmarks/inference.py [--patch 96 96 64] [--stride 88 88 48] [--filters 8] [--batch 4]
                                   [--repeats 3] [--loop-repeats 1] [--device auto] [--paper]

One model (a V-Net with random weights, eval mode), one volume (the first case of the LA
sample, 1 channel, or a random volume of LA size when the sample is absent), the same patch
and window grid for all three (MONAI's ``overlap`` is chosen so that its scan interval equals
our stride, and the outputs are checked to agree):

- ``ours``: :func:`cvcl.inference.sliding_window.sliding_window_probs`, batched;
- ``monai``: ``monai.inferers.sliding_window_inference`` with the same batch size, averaging
  the softmax (the predictor returns probabilities), constant (uniform) blending;
- ``loop``: one window at a time, softmax, add into a float32 accumulator and a count map.

On CUDA all three run under float16 autocast with channels_last_3d inputs. Ours and MONAI
alternate round by round so that drift in the machine's speed hits both alike;
``ratio_vs_monai`` is the median over rounds of ours / MONAI in the same round (target: at
most 1.0), ``speedup_vs_loop`` the loop's median time over ours. With a V-Net on a CPU the
forward passes, identical in all three, are nearly all of the time, so the ratio says little
more than "same speed" and moves with the machine's load; a second part therefore times the
machinery alone (a model that costs nothing: logits = (-x, x)) on the paper's grid
(112x112x80, stride 18/18/4, 54 windows): ``machinery_ratio_vs_monai``.

The CPU defaults (96x96x64 patch, 8 windows, f = 8, one torch thread) keep the run under a
minute on 2 cores. One thread, because on a 2-core machine shared with other jobs a second
OpenMP thread made every timing erratic (the same V-Net run took 6.7 s with two threads and
4.1 s with one, and tiny tensors were 80x slower): one thread measures the work done.
``--paper`` uses the paper's patch, strides and f = 16 (for a GPU). The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from monai.inferers import sliding_window_inference

from cvcl.device import amp_dtype, autocast, configure_backend, memory_format, select_device
from cvcl.inference.sliding_window import monai_overlap, sliding_window_probs, window_grid
from cvcl.models.vnet import VNet

LA_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "la-sample"


class Pointwise(torch.nn.Module):
    """Logits ``(-x, x)``: a model that costs nothing, to time the sliding window itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x, x], dim=1)


def load_volume() -> tuple[np.ndarray, str]:
    """``(1, X, Y, Z)`` float32 image of the first LA sample case (or random, LA-sized)."""
    cases = sorted(LA_SAMPLE.glob("2018LA_Seg_Training Set/*/mri_norm2.h5"))
    if cases:
        with h5py.File(cases[0], "r") as f:
            return f["image"][()].astype(np.float32)[None], f"LA case {cases[0].parent.name}"
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, 190, 142, 88), dtype=np.float32), "random 190x142x88 volume"


def plain_loop(model, image, patch, stride, amp, fmt) -> torch.Tensor:
    """One window per forward pass, accumulated window by window (the naive reference)."""
    shape = image.shape[1:]
    probs = count = None
    with torch.inference_mode():
        for w in window_grid(shape, patch, stride):
            x = image[(slice(None), *w)][None].contiguous(memory_format=fmt)
            with autocast(image.device, amp):
                logits = model(x)
            p = torch.softmax((logits.logits if hasattr(logits, "logits") else logits).float(), dim=1)[0]
            if probs is None:
                probs = torch.zeros((p.shape[0], *shape), dtype=torch.float32, device=image.device)
                count = torch.zeros((1, *shape), dtype=torch.float32, device=image.device)
            probs[(slice(None), *w)] += p
            count[(slice(None), *w)] += 1
    return probs / count


def methods(model, image, patch, stride, batch, amp, fmt) -> dict[str, Callable[[], torch.Tensor]]:
    overlap = [monai_overlap(p, s) for p, s in zip(patch, stride, strict=True)]

    def predictor(x: torch.Tensor) -> torch.Tensor:
        with autocast(image.device, amp):
            out = model(x.contiguous(memory_format=fmt))
        return torch.softmax((out.logits if hasattr(out, "logits") else out).float(), dim=1)

    def monai() -> torch.Tensor:
        with torch.inference_mode():
            return sliding_window_inference(image[None], patch, batch, predictor, overlap=overlap, mode="constant")[0]

    return {
        "ours": lambda: sliding_window_probs(model, image, patch, stride, batch_size=batch, amp=amp, memory_format=fmt),
        "monai": monai,
        "loop": lambda: plain_loop(model, image, patch, stride, amp, fmt),
    }


def timed(fns: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device):
    """Seconds of each method in each of ``repeats`` interleaved rounds, and each last output."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    outputs = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            outputs[name] = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times, outputs


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a / b``: drift between rounds cancels within each pair."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, nargs=3, default=[96, 96, 64])
    ap.add_argument("--stride", type=int, nargs=3, default=[88, 88, 48])
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of ours and MONAI")
    ap.add_argument("--loop-repeats", type=int, default=1, help="rounds of the plain loop (slow)")
    ap.add_argument("--machinery-repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--paper", action="store_true", help="patch 112x112x80, stride 18/18/4, f = 16")
    args = ap.parse_args()
    if args.paper:
        args.patch, args.stride, args.filters = [112, 112, 80], [18, 18, 4], 16
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    configure_backend(device)
    amp, fmt = amp_dtype(device, True), memory_format(device, True)
    patch, stride = tuple(args.patch), tuple(args.stride)

    volume, source = load_volume()
    image = torch.from_numpy(volume).to(device)
    torch.manual_seed(0)
    model = VNet(base_filters=args.filters, embed_dim=0).to(device).eval().to(memory_format=fmt)
    n_windows = len(window_grid(image.shape[1:], patch, stride))
    with torch.inference_mode():  # warm-up: first-call costs (kernel selection, allocator) off the clock
        for b in {args.batch, 1}:
            with autocast(device, amp):
                model(torch.zeros((b, 1, *patch), device=device).contiguous(memory_format=fmt))

    fns = methods(model, image, patch, stride, args.batch, amp, fmt)
    loop = fns.pop("loop")
    times, outputs = timed(fns, args.repeats, device)  # ours and MONAI, paired round by round
    loop_times, loop_out = timed({"loop": loop}, args.loop_repeats, device)
    times.update(loop_times)
    diff_monai = float((outputs["ours"] - outputs["monai"]).abs().max())
    diff_loop = float((outputs["ours"] - loop_out["loop"]).abs().max())
    del outputs, loop_out

    paper_patch, paper_stride = (112, 112, 80), (18, 18, 4)
    mech_fns = methods(Pointwise(), image, paper_patch, paper_stride, args.batch, amp, fmt)
    for fn in mech_fns.values():
        fn()
    mech, _ = timed(mech_fns, args.machinery_repeats, device)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    mech_seconds = {name: statistics.median(t) for name, t in mech.items()}

    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"{source} {tuple(image.shape[1:])}, patch {patch}, stride {stride}: {n_windows} windows, "
        f"batch {args.batch}, V-Net f={args.filters}, {device.type} ({machine})"
    )
    print(f"{'method':<8}{'V-Net s':>10}{'machinery s':>14}")
    for name in seconds:
        print(f"{name:<8}{seconds[name]:>10.3f}{mech_seconds[name]:>14.3f}")
    print(f"max |ours - monai| = {diff_monai:.2e}, max |ours - loop| = {diff_loop:.2e}")
    print(
        json.dumps(
            {
                "device": device.type,
                "machine": machine,
                "volume": list(image.shape[1:]),
                "patch": list(patch),
                "stride": list(stride),
                "windows": n_windows,
                "batch_size": args.batch,
                "filters": args.filters,
                "amp": amp is not None,
                "seconds_per_round": times,
                "seconds": seconds,
                "machinery_seconds_paper_grid": mech_seconds,
                "max_abs_diff_vs_monai": diff_monai,
                "max_abs_diff_vs_loop": diff_loop,
                "ratio_vs_monai": paired_ratio(times["ours"], times["monai"]),
                "speedup_vs_loop": seconds["loop"] / seconds["ours"],
                "machinery_ratio_vs_monai": paired_ratio(mech["ours"], mech["monai"]),
                "machinery_speedup_vs_loop": mech_seconds["loop"] / mech_seconds["ours"],
            }
        )
    )


if __name__ == "__main__":
    main()
