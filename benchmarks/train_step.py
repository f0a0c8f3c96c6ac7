"""Time, memory and profile of one training iteration per method, on the same inputs, in one run.

    python benchmarks/train_step.py [--patch 48 48 32] [--filters 8] [--norm instance] [--repeats 12]
                                    [--precision float32 amp bf16] [--compare] [--memory] [--profile]

Each method runs the trainer's own iteration (``cvcl.training.step.TrainStep``: forward under
autocast where ``train`` uses it, losses, backward through the AMP scaler, SGD step, EMA
update, channels_last on CUDA) on the same batch; methods are interleaved round by round so that
drift in the machine's speed hits all of them alike, and the median over rounds is reported.

- ``--precision``: float32 and/or amp (float16 autocast; CUDA only, the CPU trains in float32),
  each timed in the same run; ``ratio_cvcl_vs_mean_teacher`` per precision.
- ``--compare``: today's float32 step (old) against ``train.precision: bf16`` (new: bfloat16
  autocast, channels_last_3d on the CPU), each method, interleaved in one run, with
  ``ratio_new_vs_old`` (old time / new time) per method.
- ``--memory``: the peak memory of one step per method. CUDA: ``torch.cuda.max_memory_allocated``
  above what the networks and the batch hold. CPU: the peak resident memory of a fresh process
  running the step (large blocks mapped and unmapped with their tensors), above its resident
  memory once the networks and batch are built.
- ``--profile``: ``torch.profiler`` over one CVCL step: the ops of its PCL/VCL block (forward,
  and the backward autograd runs for it) by time and allocated memory, the block's share of the
  step, and the host synchronisations (``item``, ``nonzero``, ...) the step makes.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time

import torch

from cvcl import methods
from cvcl.device import configure_backend, native_bf16, select_device
from cvcl.methods import LossConfig
from cvcl.models.config import ModelConfig
from cvcl.training.config import TrainConfig
from cvcl.training.objective import Objective
from cvcl.training.step import TrainStep

# the methods the ratio compares and the supervised floor (ua_mt's T teacher passes are not the
# question here); any of cvcl.methods.names() works
METHODS = ("supervised", "mean_teacher", "cvcl")
# ops that wait for the device (on CUDA); counted on the CPU too, where they would
SYNC_OPS = (
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::unique",
    "aten::_unique2",
    "aten::is_nonzero",
    "aten::masked_select",
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
)


def make_step(
    method: str,
    cfg: ModelConfig,
    device: torch.device,
    images,
    labels,
    labeled_bs: int,
    split_bn: bool = False,
    amp: bool = True,
    channels_last: bool = True,
    precision: str = "float32",
):
    semi = methods.get(method).semi_supervised  # ParamError for a name not in cvcl.methods
    objective = Objective(
        method, LossConfig(rampup_length=0.0, vcl_weight=0.6), total_iterations=1000, split_bn=split_bn
    )
    torch.manual_seed(0)
    train_cfg = TrainConfig(
        iterations=1000,
        batch_size=images.shape[0],
        labeled_bs=labeled_bs,
        patch=tuple(images.shape[-3:]),
        amp=amp,
        channels_last=channels_last,
        precision=precision,
    )
    trainer = TrainStep(objective, cfg, train_cfg, device)
    # a supervised method trains on the labeled volumes only, as in the pipeline
    x, y = (images, labels) if semi else (images[:labeled_bs], labels[:labeled_bs])

    def step(t: int) -> None:
        trainer(x, y, t)

    return step


def make_batch(args, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random image batch ``(B, 1, *patch)`` and a box label in the middle."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 1, *args.patch, generator=g).to(device)
    labels = torch.zeros(args.batch, *args.patch, dtype=torch.long)
    c = [p // 2 for p in args.patch]
    labels[:, c[0] - 8 : c[0] + 8, c[1] - 8 : c[1] + 8, c[2] - 6 : c[2] + 6] = 1
    return images, labels.to(device)


def build(args, device: torch.device, method: str, amp: bool, precision: str = "float32"):
    images, labels = make_batch(args, device)
    cfg = ModelConfig(base_filters=args.filters, embed_dim=64, norm=args.norm)
    return make_step(
        method, cfg, device, images, labels, args.labeled_bs, args.split_bn, amp, args.channels_last, precision
    )


def compare_paths(args, device: torch.device) -> dict:
    """Today's float32 step (old) against the bfloat16 path (new, ``train.precision: bf16``), each
    method, interleaved round by round in one run; ``ratio_new_vs_old`` is old / new time."""
    paths = {"float32": "float32", "bf16": "bf16"}
    steps = {(m, p): build(args, device, m, False, paths[p]) for m in METHODS for p in paths}
    for step in steps.values():  # warm-up: oneDNN's kernel choice, the allocator
        step(0)
        step(1)
    times: dict = {k: [] for k in steps}
    for r in range(args.repeats):
        for key, step in steps.items():
            start = time.perf_counter()
            step(100 + r)
            times[key].append(time.perf_counter() - start)
        print(f"  round {r + 1}/{args.repeats}", flush=True)
    out: dict = {}
    for m in METHODS:
        old, new = statistics.median(times[(m, "float32")]), statistics.median(times[(m, "bf16")])
        out[m] = {"old_float32_s": round(old, 4), "new_bf16_s": round(new, 4), "ratio_new_vs_old": round(old / new, 3)}
        print(f"{m:<14} float32 {old:.3f} s  bf16 {new:.3f} s  ratio_new_vs_old {old / new:.3f}", flush=True)
    return out


def time_steps(args, device: torch.device, amp: bool, precision: str = "float32") -> dict[str, float]:
    """Median seconds per iteration of each method, interleaved round by round."""
    steps = {m: build(args, device, m, amp, precision) for m in METHODS}
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
            print(f"  round {r + 1}/{args.repeats} {m:<14} {times[m][-1]:.3f} s", flush=True)
    return {m: statistics.median(v) for m, v in times.items()}


def _status_bytes(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak since the last reset) of this process, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status: no {field} (Linux only)")


def _cpu_peak_child(args, method: str, queue) -> None:
    torch.set_num_threads(args.threads)
    step = build(args, torch.device("cpu"), method, amp=False)
    step(0)  # the optimiser's momentum buffers exist from the second step on
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak (VmHWM) to the current RSS
        f.write("5")
    step(1)
    queue.put(_status_bytes("VmHWM") - before)


def peak_memory(args, device: torch.device, method: str, amp: bool) -> int:
    """Bytes one step of ``method`` holds at its peak above the built networks and batch."""
    if device.type == "cuda":
        step = build(args, device, method, amp)
        step(0)  # the optimiser's momentum buffers exist from the second step on
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(1)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    ctx = multiprocessing.get_context("spawn")  # a fresh process: its peak is this step's alone
    queue = ctx.Queue()
    child = ctx.Process(target=_cpu_peak_child, args=(args, method, queue))
    # a fixed mmap threshold: every large tensor is mapped on allocation and unmapped when freed,
    # so resident memory follows the live tensors (glibc's moving threshold keeps freed blocks)
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
    try:
        child.start()
    finally:
        if saved is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved
    peak = queue.get()
    child.join()
    return peak


def _descendants(event) -> list:
    out, stack = [], [event]
    while stack:
        e = stack.pop()
        out.append(e)
        stack.extend(e.cpu_children)
    return out


def block_events(events, block: str = "cvcl.prototype_terms") -> list:
    """The profiler events of the CVCL loss block: the ops under its ``record_function`` and the
    backward ops autograd runs for them (matched by the forward op's sequence number)."""
    forward = [d for e in events if e.name == block for d in _descendants(e)]
    seqs = {e.sequence_nr for e in forward if e.sequence_nr >= 0}
    backward = [
        d
        for e in events
        if e.name.startswith("autograd::engine::evaluate_function:") and e.sequence_nr in seqs
        for d in _descendants(e)
    ]
    return [e for e in forward + backward if e.name != block]


def profile_steps(args, device: torch.device, amp: bool, top: int = 15) -> dict:
    """Profile one CVCL step: the ops of its PCL/VCL block (forward and backward) by time and
    memory, that block's share of the step, and the host synchronisations of the step."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities):  # the profiler's own first start is slow: not in the figures
        torch.zeros(1, device=device).sum()
    step = build(args, device, "cvcl", amp)
    step(0)
    step(1)
    with profile(activities=activities, profile_memory=True) as prof:
        step(2)
        if cuda:
            torch.cuda.synchronize(device)
    events = prof.events()
    self_time = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    self_mem = (lambda e: e.self_device_memory_usage) if cuda else (lambda e: e.self_cpu_memory_usage)
    block = block_events(events)
    by_op: dict[str, list[float]] = {}
    for e in block:
        t, m, n = by_op.setdefault(e.name, [0.0, 0.0, 0])
        by_op[e.name] = [t + self_time(e), m + max(self_mem(e), 0), n + 1]
    step_s = sum(self_time(e) for e in events) / 1e6
    block_s = sum(v[0] for v in by_op.values()) / 1e6
    block_mib = sum(v[1] for v in by_op.values()) / 2**20
    syncs = {k: sum(1 for e in events if e.name == k) for k in SYNC_OPS}
    syncs = {k: v for k, v in syncs.items() if v}
    ranked = sorted(by_op.items(), key=lambda kv: -kv[1][0])[:top]
    print(
        f"\nprofile of one CVCL step ({device.type}, {'amp' if amp else 'float32'}): {step_s:.2f} s of op time, "
        f"of which the PCL/VCL block (forward + backward) {block_s:.2f} s ({100 * block_s / step_s:.0f}%), "
        f"allocating {block_mib:.0f} MiB"
    )
    print(f"{'op in the PCL/VCL block':<48} {'self time (s)':>13} {'calls':>6} {'allocated (MiB)':>16}")
    for name, (t, m, n) in ranked:
        print(f"{name[:48]:<48} {t / 1e6:>13.3f} {n:>6} {m / 2**20:>16.1f}")
    print(f"host synchronisations in the step: {syncs or 'none'}", flush=True)
    return {
        "step_op_seconds": round(step_s, 3),
        "block_seconds": round(block_s, 3),
        "block_share": round(block_s / step_s, 3),
        "block_allocated_mib": round(block_mib, 1),
        "block_ops": [
            {"op": k, "seconds": round(t / 1e6, 4), "calls": n, "allocated_mib": round(m / 2**20, 1)}
            for k, (t, m, n) in ranked
        ],
        "host_syncs": syncs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 32])
    ap.add_argument("--filters", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--labeled-bs", type=int, default=2)
    ap.add_argument(
        "--norm",
        choices=("instance", "batch", "none"),
        default="instance",
        help="V-Net normalisation (instance: the CPU demo's default; batch: the paper's)",
    )
    ap.add_argument("--split-bn", action="store_true", help="labeled and unlabeled halves in two forward passes")
    ap.add_argument("--repeats", type=int, default=12, help="timed rounds (0: no timing)")
    ap.add_argument(
        "--precision",
        nargs="+",
        choices=("float32", "amp", "bf16"),
        default=None,
        help="default: float32 and amp on CUDA, float32 on the CPU; bf16: train.precision=bf16",
    )
    ap.add_argument(
        "--compare",
        action="store_true",
        help="time float32 (old) against bf16 (new) per method in one interleaved run: ratio_new_vs_old",
    )
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--memory", action="store_true", help="peak memory of one step per method")
    ap.add_argument("--profile", action="store_true", help="torch.profiler: the ops of the CVCL step's PCL/VCL block")
    ap.add_argument("--profile-top", type=int, default=15, help="ops listed by --profile")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = select_device(args.device)
    configure_backend(device)
    args.threads = torch.get_num_threads()
    precisions = args.precision or (["float32", "amp"] if device.type == "cuda" else ["float32"])
    report: dict = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "machine": f"{platform.machine()}, {args.threads} threads, torch {torch.__version__}",
        "patch": args.patch,
        "base_filters": args.filters,
        "batch": args.batch,
        "norm": args.norm,
        "split_bn": args.split_bn,
        "channels_last": args.channels_last and device.type == "cuda",
    }
    if args.compare:
        report["compare"] = compare_paths(args, device)
        report["native_bf16"] = native_bf16()
        print(json.dumps(report))
        return
    for precision in precisions:
        if precision == "bf16":
            seconds = time_steps(args, device, False, "bf16") if args.repeats else {}
            report["bf16"] = {"seconds_per_iteration": {m: round(v, 4) for m, v in seconds.items()}}
            for m, v in seconds.items():
                print(f"bf16     {m:<14} {v:.3f} s/iteration (median of {args.repeats})", flush=True)
            continue
        amp = precision == "amp" and device.type == "cuda"
        if precision == "amp" and not amp:
            print("amp: CUDA only (the CPU trains in float32); skipped")
            continue
        entry: dict = {}
        if args.repeats:
            seconds = time_steps(args, device, amp)
            for m in METHODS:
                print(f"{precision:<8} {m:<14} {seconds[m]:.3f} s/iteration (median of {args.repeats})", flush=True)
            entry["seconds_per_iteration"] = {m: round(s, 4) for m, s in seconds.items()}
            entry["ratio_cvcl_vs_mean_teacher"] = round(seconds["cvcl"] / seconds["mean_teacher"], 3)
            print(f"{precision:<8} ratio_cvcl_vs_mean_teacher {entry['ratio_cvcl_vs_mean_teacher']}", flush=True)
        if args.memory:
            peaks = {m: peak_memory(args, device, m, amp) for m in METHODS}
            for m in METHODS:
                print(f"{precision:<8} {m:<14} peak {peaks[m] / 2**20:.0f} MiB above the built step", flush=True)
            entry["peak_mib"] = {m: round(b / 2**20, 1) for m, b in peaks.items()}
            entry["memory_ratio_cvcl_vs_mean_teacher"] = round(peaks["cvcl"] / max(peaks["mean_teacher"], 1), 3)
            print(
                f"{precision:<8} memory_ratio_cvcl_vs_mean_teacher {entry['memory_ratio_cvcl_vs_mean_teacher']}",
                flush=True,
            )
        if args.profile:
            entry["profile"] = profile_steps(args, device, amp, args.profile_top)
        report[precision] = entry
    print(json.dumps(report))


if __name__ == "__main__":
    main()
