"""Run records (cvcl.tracking.records): written without MLflow, imported into a private SQLite
store with every param, curve point, final metric, artifact, time and status, once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from cvcl.commands import main as cvcl
from cvcl.evaluation.report import PER_CASE_FIELDS
from cvcl.tracking.record_store import export_records, import_records
from cvcl.tracking.records import (
    HASH_TAG,
    RECORD_TAG,
    RecordError,
    RunRecorder,
    read_record,
    record_files,
    write_record,
)
from tests.conftest import ROOT

N_STEPS = 400  # 3 curves of 400 points: 1200 points, more than one log_batch call may take


def make_record(tmp_path, name="toy.json", steps=N_STEPS, status="KILLED", seed=1):
    """A record as gpu_check writes one: params, tags, per-step curves, final metrics, per_case.csv."""
    rec = RunRecorder(
        f"cvcl-l2-s{seed}",
        {
            "dataset": "la",
            "labeled": 2,
            "seed": seed,
            "method": "cvcl",
            "train.patch": [32, 32, 16],
            "loss.vcl_weight": 0.6,
        },
        {"method": "cvcl", RECORD_TAG: "gpu_check", "cvcl.device": "test"},
        experiment="cvcl-test-gpu",
        dataset={"name": "la", "source": "la-sample", "version": None},
    )
    for s in range(steps):
        rec.log_step(s, {"loss": 1.0 / (s + 1), "lr": 0.01 * (1 - s / steps) ** 0.9, "grad_norm": float(s % 7)})
    rec.log_metrics(
        {"dice": 0.8125, "hd95": 3.5, "asd": math.nan, "n_cases": 2, "distance_unit": "voxel", "degenerate": False}
    )
    rec.log_metrics({"dice": 0.75}, prefix="teacher_")
    rows = [
        {
            "case_id": "a",
            "dice": 0.8,
            "jaccard": 0.66,
            "hd95": 3.0,
            "asd": 1.0,
            "assd": 1.0,
            "distance_unit": "voxel",
            "pred_ml": 1.5,
            "true_ml": 1.6,
            "pred_fraction": 0.1,
            "empty": "",
            "degenerate": False,
        },
        {"case_id": "b", "dice": 0.825, "hd95": 4.0},
    ]
    rec.add_csv("per_case.csv", PER_CASE_FIELDS, rows)
    rec.set_tags({"cvcl.iterations_reached": f"{steps} of {2 * steps}, cut short by the --minutes deadline"})
    path = rec.write(tmp_path / "runs" / name, status)
    return path, read_record(path)


def store_runs(uri):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client, (client.search_runs(ids) if ids else [])


def test_the_writer_works_without_mlflow(tmp_path):
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('mlflow', 'dvc'):\n"
        "            raise ImportError('no ' + name + ' on the GPU machine')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cvcl.tracking.records import RunRecorder, read_record, run_tags\n"
        "rec = RunRecorder('r', {'labeled': 2}, run_tags('benchmarks/gpu_check.py', 'cpu', 'gpu_check'))\n"
        "rec.log_step(0, {'loss': 0.5})\n"
        f"rec.write({str(tmp_path / 'r.json')!r})\n"
        "assert read_record(" + repr(str(tmp_path / "r.json")) + ").curves == {'loss': [(0, 0.5)]}\n"
        "assert not any(m.split('.')[0] == 'mlflow' for m in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_record_lands_in_the_store_whole(mlflow_store, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    sizes = []
    log_batch = MlflowClient.log_batch

    def counting(self, run_id, metrics=(), *args, **kwargs):
        sizes.append(len(metrics))
        return log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counting)
    path, record = make_record(tmp_path)
    assert set(record.curves) == {"loss", "lr", "grad_norm"} and record.n_points() == 3 * N_STEPS
    [result] = import_records([path], say=lambda line: None)
    assert result.created
    client, runs = store_runs(mlflow_store)
    assert [r.info.run_id for r in runs] == [result.run_id]
    got = client.get_run(result.run_id)
    assert client.get_experiment(got.info.experiment_id).name == "cvcl-test-gpu"
    assert got.info.run_name == "cvcl-l2-s1" and got.info.status == "KILLED"
    assert (got.info.start_time, got.info.end_time) == (record.start_ms, record.end_ms)
    # params as the train stage logs them (lists as JSON)
    assert got.data.params == {
        "dataset": "la",
        "labeled": "2",
        "seed": "1",
        "method": "cvcl",
        "train.patch": "[32, 32, 16]",
        "loss.vcl_weight": "0.6",
    }
    assert got.data.tags[RECORD_TAG] == "gpu_check" and got.data.tags[HASH_TAG] == record.sha256()
    assert got.data.tags["cvcl.iterations_reached"].startswith(f"{N_STEPS} of {2 * N_STEPS}, cut short")
    # every point of every curve, with its step and the time it was read back
    for key, points in record.curves.items():
        history = sorted(client.get_metric_history(result.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == points
        assert [m.timestamp for m in history] == [record.step_ms[s] for s, _ in points]
    # final metrics under the evaluate stage's names: NaN and strings left out, bools as 0/1
    final = {k: v for k, v in got.data.metrics.items() if k not in record.curves}
    assert final == {"dice": 0.8125, "hd95": 3.5, "n_cases": 2.0, "degenerate": 0.0, "teacher_dice": 0.75}
    assert max(sizes) <= 1000 and sum(sizes) == 3 * N_STEPS + len(final) and len(sizes) >= 2
    artifact = client.download_artifacts(result.run_id, "per_case.csv", str(tmp_path / "dl"))
    text = open(artifact).read()
    assert text == record.artifacts["per_case.csv"]
    assert text.splitlines()[0].split(",") == PER_CASE_FIELDS and len(text.splitlines()) == 3
    assert [d.dataset.name for d in got.inputs.dataset_inputs] == ["la"]


def test_a_second_import_creates_nothing(mlflow_store, tmp_path):
    path, record = make_record(tmp_path, steps=5, status="FINISHED")
    [first] = import_records([path], say=lambda line: None)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "cvcl"), "records", "import", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{path}: skipped (already imported), run {first.run_id}" in proc.stdout
    client, runs = store_runs(mlflow_store)
    assert [r.info.run_id for r in runs] == [first.run_id]
    assert len(client.get_metric_history(first.run_id, "loss")) == 5  # no point logged twice


def test_an_import_killed_midway_is_redone(mlflow_store, tmp_path):
    from mlflow import MlflowClient

    path, record = make_record(tmp_path, steps=3, status="FINISHED")
    client = MlflowClient(mlflow_store)
    exp = client.create_experiment("cvcl-test-gpu", artifact_location=(tmp_path / "art").as_uri())
    stale = client.create_run(exp, tags={HASH_TAG: record.sha256()}, run_name="half")  # left RUNNING
    [result] = import_records([path], say=lambda line: None)
    assert result.created and result.run_id != stale.info.run_id
    _, runs = store_runs(mlflow_store)
    assert [(r.info.run_id, r.info.status) for r in runs] == [(result.run_id, "FINISHED")]


def test_distinct_records_become_distinct_runs(mlflow_store, tmp_path):
    paths = [make_record(tmp_path, f"s{seed}.json", steps=3, seed=seed)[0] for seed in (1, 2)]
    assert record_files([tmp_path]) == paths  # the --out folder: its runs/
    results = import_records([tmp_path], experiment="cvcl-other", say=lambda line: None)
    client, runs = store_runs(mlflow_store)
    assert sorted(r.info.run_name for r in runs) == ["cvcl-l2-s1", "cvcl-l2-s2"] and all(r.created for r in results)
    assert {client.get_experiment(r.info.experiment_id).name for r in runs} == {"cvcl-other"}


def _truncate(path):
    path.write_text(path.read_text()[:200])


def _bad_value(path):
    data = json.loads(path.read_text())
    data["curves"]["loss"][1][1] = "0.5"
    path.write_text(json.dumps(data))


def _escaping_artifact(path):
    data = json.loads(path.read_text())
    data["artifacts"]["../../outside.csv"] = "x\n"
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("corrupt", [_truncate, _bad_value, _escaping_artifact])
def test_a_corrupt_record_is_refused_in_one_line_naming_it(mlflow_store, tmp_path, capsys, corrupt):
    good, _ = make_record(tmp_path, "a-good.json", steps=3)
    bad, _ = make_record(tmp_path, "b-bad.json", steps=3, seed=2)
    corrupt(bad)
    with pytest.raises(RecordError, match="b-bad.json"):
        read_record(bad)
    assert cvcl(["records", "import", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: ")
    # the records are all checked before the store is touched: nothing of either is imported
    assert store_runs(mlflow_store)[1] == []
    assert not (tmp_path / "outside.csv").exists()


def test_a_missing_path_is_refused(mlflow_store, tmp_path, capsys):
    assert cvcl(["records", "import", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: not found" in capsys.readouterr().err


def test_write_record_is_atomic_and_round_trips(tmp_path):
    path, record = make_record(tmp_path, steps=2)
    assert write_record(tmp_path / "again.json", record) and read_record(tmp_path / "again.json") == record
    assert read_record(tmp_path / "again.json").sha256() == record.sha256()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["toy.json"]  # no temporary left


def test_an_experiment_exported_as_records_imports_back_whole(mlflow_store, tmp_path):
    """A results table's runs travel with the repository: export, then import into a fresh
    experiment gives the same params, curves (steps and values), final metrics and per-case scores."""
    from mlflow import MlflowClient

    _, record = make_record(tmp_path, status="FINISHED")
    killed, _ = make_record(tmp_path, name="killed.json", steps=5, status="KILLED", seed=2)
    import_records([tmp_path / "runs"], say=lambda line: None)
    out = tmp_path / "exported"
    written = export_records("cvcl-test-gpu", out, say=lambda line: None)
    assert len(written) == 1  # the KILLED run is not a result
    exported = read_record(written[0])
    assert exported.run_name == "cvcl-l2-s1" and exported.experiment == "cvcl-test-gpu"
    assert exported.curves == record.curves
    assert exported.metrics == {"dice": 0.8125, "hd95": 3.5, "n_cases": 2.0, "degenerate": 0.0, "teacher_dice": 0.75}
    assert exported.artifacts["per_case.csv"] == record.artifacts["per_case.csv"]
    assert exported.params["train.patch"] == "[32, 32, 16]" and exported.dataset["name"] == "la"
    assert HASH_TAG not in exported.tags and exported.tags[RECORD_TAG] == "gpu_check"

    [again] = import_records(written, experiment="cvcl-copy", say=lambda line: None)
    client = MlflowClient(mlflow_store)
    copy = client.get_run(again.run_id)
    assert client.get_experiment(copy.info.experiment_id).name == "cvcl-copy"
    assert copy.data.params == exported.params and copy.info.status == "FINISHED"
    for key, points in record.curves.items():
        history = sorted(client.get_metric_history(again.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == points
    assert {k: v for k, v in copy.data.metrics.items() if k not in record.curves} == exported.metrics
    with pytest.raises(RecordError, match="no experiment"):
        export_records("no-such-experiment", out, say=lambda line: None)
