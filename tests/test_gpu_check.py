"""benchmarks/gpu_check.py at tiny sizes on the CPU: the script prepared for a short GPU lease
must run end to end before it is spent there (its figures are not asserted), and its run
records must import into MLflow whole."""

import json
import math
import subprocess
import sys

import pytest

from cvcl.evaluation.report import PER_CASE_FIELDS
from tests.conftest import LA_SAMPLE, ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LA_SAMPLE.is_dir(), reason="the shared LA sample is not available"),
]


def gpu_check(out, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``benchmarks/gpu_check.py --data <LA sample> --tiny ARGS --out OUT`` from the repository root."""
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--data", str(LA_SAMPLE), "--tiny", *args, "--out", str(out)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def small_run(out, *args: str) -> subprocess.CompletedProcess:
    """gpu_check without the benchmark, on 2 labeled and 2 unlabeled cases."""
    return gpu_check(out, "--skip-bench", "--labeled", "2", "--unlabeled", "2", *args)


def test_gpu_check_trains_infers_and_scores_each_variant(tmp_path, mlflow_store):
    from mlflow import MlflowClient

    from cvcl.tracking.record_store import import_records
    from cvcl.tracking.records import read_record

    variants = ["supervised", "cvcl:loss.vcl_weight=0.6"]
    proc = small_run(tmp_path, "--variants", *variants)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1])["overrides"] == report["overrides"]
    for spec in variants:
        result = report[spec]
        assert result["iterations_reached"] == result["iterations_planned"] == 4
        assert 0.0 <= result["student"]["dice_mean"] <= 1.0 and len(result["student"]["cases"]) == 1
    assert "teacher" in report["cvcl:loss.vcl_weight=0.6"] and "teacher" not in report["supervised"]

    # one run record per variant, every step of the 4 iterations in it, importable whole
    paths = [tmp_path / "runs" / name for name in ("supervised.json", "cvcl-loss.vcl_weight-0.6.json")]
    records = [read_record(p) for p in paths]
    results = import_records([tmp_path], say=lambda line: None)
    assert sorted(r.path for r in results) == sorted(paths) and all(r.created for r in results)
    run_ids = {r.path: r.run_id for r in results}
    client = MlflowClient(mlflow_store)
    for spec, path, record in zip(variants, paths, records, strict=True):
        run = client.get_run(run_ids[path])
        assert run.info.status == "FINISHED" and run.info.run_name == record.run_name
        assert run.data.tags["cvcl.iterations_reached"] == "4 of 4" and run.data.tags["cvcl.variant"] == spec
        assert run.data.params["method"] == spec.split(":")[0] and run.data.params["train.iterations"] == "4"
        assert run.data.params["labeled"] == "2" and run.data.params["infer.stride"] == "[32, 32, 16]"
        for key in ("loss", "loss_sup", "lr", "grad_norm"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1, 2, 3], key
        student = report[spec]["student"]
        assert run.data.metrics["dice"] == pytest.approx(student["dice_mean"])
        # a NaN mean (an empty prediction) is left out, as the evaluate stage leaves it
        assert run.data.metrics.get("hd95", math.nan) == pytest.approx(student["hd95_mean"], nan_ok=True)
        csv = open(client.download_artifacts(run.info.run_id, "per_case.csv", str(tmp_path / "dl" / path.stem))).read()
        assert csv.splitlines()[0].split(",") == PER_CASE_FIELDS and len(csv.splitlines()) == 2
    cvcl_run = client.get_run(run_ids[paths[1]])
    assert "teacher_dice" in cvcl_run.data.metrics and "loss_vcl_l" in cvcl_run.data.metrics
    assert cvcl_run.data.params["loss.vcl_weight"] == "0.6"
    assert all(not k.startswith("teacher_") for k in client.get_run(run_ids[paths[0]]).data.metrics)
    assert not any(r.created for r in import_records([tmp_path], say=lambda line: None))


def test_a_bad_variant_is_refused_with_one_line(tmp_path):
    proc = gpu_check(tmp_path, "--variants", "fixmatch", timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith("error: --variants")


def test_a_run_the_deadline_cuts_short_is_recorded_killed(tmp_path):
    from cvcl.tracking.records import REACHED_TAG, read_record

    # a deadline 6 ms after the start: each child is past it at its first iteration
    proc = small_run(tmp_path, "--variants", "supervised", "--minutes", "0.0001")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read_record(tmp_path / "runs" / "supervised.json")
    assert record.status == "KILLED" and record.tags[REACHED_TAG] == "1 of 4, cut short by the --minutes deadline"
    assert [s for s, _ in record.curves["loss"]] == [0] and "dice" in record.metrics
    assert json.loads((tmp_path / "gpu_check.json").read_text())["supervised"]["iterations_reached"] == 1
