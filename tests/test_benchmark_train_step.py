"""benchmarks/train_step.py runs and ends with its JSON line (its timings are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--patch", "32", "16", "16", "--filters", "2", "--device", "cpu"]


def _run(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "benchmarks/train_step.py", *TINY, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("extra", [[], ["--norm", "batch", "--split-bn"]])
def test_train_step_benchmark_reports_every_method_and_the_ratio(extra):
    result = _run("--repeats", "1", *extra)
    assert "amp" not in result  # the CPU trains in float32: no AMP figures on it
    seconds = result["float32"]["seconds_per_iteration"]
    assert set(seconds) == {"supervised", "mean_teacher", "cvcl"}
    assert all(s > 0 for s in seconds.values())
    ratio = result["float32"]["ratio_cvcl_vs_mean_teacher"]
    assert ratio == pytest.approx(seconds["cvcl"] / seconds["mean_teacher"], rel=0.01)
    assert result["norm"] == (extra[1] if extra else "instance")


def test_memory_and_profile_report_the_cvcl_block():
    result = _run("--repeats", "0", "--memory", "--profile", "--profile-top", "200")["float32"]
    assert "seconds_per_iteration" not in result
    peaks = result["peak_mib"]
    assert set(peaks) == {"supervised", "mean_teacher", "cvcl"} and all(p > 0 for p in peaks.values())
    profile = result["profile"]
    assert 0 < profile["block_seconds"] < profile["step_op_seconds"]
    ops = {op["op"] for op in profile["block_ops"]}
    # the block's forward (prototype maps upsampled, anchors drawn) and the backward autograd runs for it
    assert {"aten::upsample_trilinear3d", "aten::topk"} <= ops, ops
    assert any("Backward" in op or "backward" in op for op in ops), ops
    assert profile["host_syncs"] == {}


def test_compare_times_float32_against_bf16_per_method():
    result = _run("--repeats", "1", "--compare")
    compare = result["compare"]
    assert set(compare) == {"supervised", "mean_teacher", "cvcl"}
    for m, row in compare.items():
        assert row["old_float32_s"] > 0 and row["new_bf16_s"] > 0, m
        assert row["ratio_new_vs_old"] == pytest.approx(row["old_float32_s"] / row["new_bf16_s"], rel=0.01)
    assert isinstance(result["native_bf16"], bool)


def test_step_profile_sums_each_methods_time_into_op_families():
    out = subprocess.run(
        [sys.executable, "benchmarks/step_profile.py", "--patch", "32", "32", "32", "--filters", "2", "--steps", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for m in ("supervised", "mean_teacher", "cvcl"):
        shares = result[m]["share"]
        assert sum(shares.values()) == pytest.approx(1.0, rel=1e-6)
        assert shares.get("convolution", 0) > 0.1  # a V-Net step is mostly convolutions
    assert result["cvcl"]["families"].get("resampling", 0) > 0  # the prototype terms resample
