"""benchmarks/train_step.py runs and ends with its JSON line (its timings are not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("extra", [[], ["--norm", "batch", "--split-bn"]])
def test_train_step_benchmark_reports_every_method_and_the_ratio(extra):
    out = subprocess.run([sys.executable, "benchmarks/train_step.py", "--patch", "32", "16", "16",
                          "--filters", "2", "--repeats", "1", "--device", "cpu", *extra],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    seconds = result["seconds_per_iteration"]
    assert set(seconds) == {"supervised", "mean_teacher", "cvcl"}
    assert all(s > 0 for s in seconds.values())
    assert result["ratio_cvcl_vs_mean_teacher"] == pytest.approx(seconds["cvcl"] / seconds["mean_teacher"], rel=0.01)
    assert result["norm"] == (extra[1] if extra else "instance")
