"""benchmarks/gpu_check.py at tiny sizes on the CPU: the script prepared for a short GPU lease
must run end to end before it is spent there (its figures are not asserted)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import LA_SAMPLE, ROOT

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="the shared LA sample is not available")]


def test_gpu_check_trains_infers_and_scores_each_variant(tmp_path):
    variants = ["supervised", "cvcl:loss.vcl_weight=0.05"]
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--data", str(LA_SAMPLE), "--tiny",
                           "--skip-bench", "--labeled", "2", "--unlabeled", "2", "--variants", *variants,
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1])["overrides"] == report["overrides"]
    for spec in variants:
        result = report[spec]
        assert result["iterations_reached"] == result["iterations_planned"] == 4
        assert 0.0 <= result["student"]["dice_mean"] <= 1.0 and len(result["student"]["cases"]) == 1
    assert "teacher" in report["cvcl:loss.vcl_weight=0.05"] and "teacher" not in report["supervised"]


def test_a_bad_variant_is_refused_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--data", str(LA_SAMPLE), "--tiny",
                           "--variants", "fixmatch", "--out", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: --variants")
