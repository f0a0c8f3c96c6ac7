"""Where one training iteration's CPU time goes, by op family, per method (issue 29's profile).

    python benchmarks/step_profile.py [--patch 64 64 32] [--filters 8] [--threads 1] [--steps 3]
                                      [--compile] [--top 12]

Each method runs the trainer's own step (``cvcl.training.step.TrainStep``, as
``benchmarks/train_step.py`` builds it) on LA-mini's size by default, under ``torch.profiler``
on the CPU, after two warm-up steps. The ops' self CPU time is summed into families
(convolutions, normalisation, elementwise, losses and softmax, resampling, reductions, copies and
memory, optimizer, EMA), and one batch of the pipeline's data loading and augmentation is timed
beside it on processed cases (``--processed``; skipped without). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.train_step import METHODS, make_batch, make_step  # noqa: E402
from cvcl.models.config import ModelConfig  # noqa: E402

# (family, pattern on the op name), first match wins; order matters (backward names contain forward ones)
FAMILIES: tuple[tuple[str, str], ...] = (
    ("optimizer", r"Optimizer\.step|_foreach_(add|mul|addcmul|lerp)_.*sgd|sgd"),
    ("ema", r"ema"),
    ("convolution", r"conv|mkldnn_convolution|slow_conv|col2vol|vol2col|_convolution"),
    ("normalisation", r"instance_norm|batch_norm|native_batch_norm|_batch_norm|group_norm|layer_norm"),
    ("resampling", r"upsample|interpolate|grid_sampler|max_pool|avg_pool"),
    ("losses and softmax", r"softmax|log_softmax|mse|nll|cross_entropy|cosine|normalize|logsumexp|_softmax"),
    (
        "elementwise",
        r"relu|threshold|add|mul|sub|div|dropout|bernoulli|sigmoid|exp|log|pow|sqrt|neg|where|clamp|abs|rsub|lerp",
    ),
    ("reductions", r"sum|mean|norm|amax|max|min|argmax|std|var|topk|sort"),
    ("indexing and gather", r"index|gather|scatter|nonzero|masked|take|select|cat|stack|multinomial|randperm"),
    (
        "copies and memory",
        r"copy|clone|contiguous|to|empty|zeros|ones|fill|view|reshape|permute|as_strided|resize|expand|_to_copy",
    ),
)
COMPILED = re.compile("|".join(f"(?P<f{i}>{p})" for i, (_, p) in enumerate(FAMILIES)), re.IGNORECASE)


def family(name: str) -> str:
    if name.startswith("Torch-Compiled") or "CompiledFunction" in name or name.startswith("cpp_fused"):
        return "compiled kernels"
    m = COMPILED.search(name)
    return FAMILIES[int(m.lastgroup[1:])][0] if m and m.lastgroup else "other"


def profile_method(args, method: str) -> dict:
    torch.set_num_threads(args.threads)
    images, labels = make_batch(args, torch.device("cpu"))
    cfg = ModelConfig(base_filters=args.filters, embed_dim=64, embed_hidden=64, norm=args.norm)
    step = make_step(method, cfg, torch.device("cpu"), images, labels, args.labeled_bs, amp=False)
    for t in range(2):
        step(t)
    from torch.profiler import ProfilerActivity, profile

    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for t in range(args.steps):
            step(10 + t)
    wall = (time.perf_counter() - start) / args.steps
    by_family: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        us = e.self_cpu_time_total / args.steps
        by_family[family(e.key)] += us
        by_op[e.key] += us
    total = sum(by_family.values())
    return {
        "seconds_per_step": wall,
        "families": {k: v / 1e6 for k, v in sorted(by_family.items(), key=lambda kv: -kv[1])},
        "share": {k: v / total for k, v in sorted(by_family.items(), key=lambda kv: -kv[1])},
        "top_ops": {k: v / 1e6 for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[: args.top]},
    }


def loading_seconds(args) -> float | None:
    """One training batch of the pipeline's patch dataset (read, crop, augment, collate)."""
    if not args.processed:
        return None
    from cvcl.data.dataset import PatchDataset

    ids = sorted(p.removesuffix(".h5") for p in os.listdir(args.processed) if p.endswith(".h5"))[:8]
    ds = PatchDataset(args.processed, ids[:4], ids[4:], tuple(args.patch))
    start = time.perf_counter()
    n = 20
    for i in range(n):
        batch = [ds[((i * 4 + j) % len(ds), i * 4 + j)] for j in range(args.batch)]  # (case, augmentation seed)
        torch.utils.data.default_collate(batch)
    return (time.perf_counter() - start) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patch", type=int, nargs=3, default=[64, 64, 32])
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--norm", default="instance")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--labeled-bs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--processed", default=None, help="a data/processed folder, to time data loading too")
    args = p.parse_args()
    # make_step reads these from the train_step benchmark's arguments
    args.split_bn, args.channels_last = False, True
    out: dict = {"patch": args.patch, "filters": args.filters, "threads": args.threads, "torch": torch.__version__}
    for method in args.methods:
        r = profile_method(args, method)
        out[method] = r
        print(f"\n{method}: {r['seconds_per_step']:.3f} s per step (profiled)", flush=True)
        for k, v in r["families"].items():
            print(f"  {k:<22}{v:8.3f} s  {100 * r['share'][k]:5.1f} %", flush=True)
        print("  top ops: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in list(r["top_ops"].items())[:8]))
    loading = loading_seconds(args)
    if loading is not None:
        out["data_loading_seconds_per_batch"] = loading
        print(f"\ndata loading + augmentation: {loading:.3f} s per batch of {args.batch}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
