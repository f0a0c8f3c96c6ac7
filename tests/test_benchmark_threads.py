"""benchmarks/threads.py: the side-by-side runs' throughput is summed over runs, each layout runs
on the threads it names, and the report's ratio is its own figures' (timings are not asserted)."""

import importlib.util
import json

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("threads_benchmark", ROOT / "benchmarks" / "threads.py")
threads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(threads)

TINY = ["--patch", "32", "16", "16", "--filters", "2", "--repeats", "1"]


def test_throughput_sums_iterations_per_second_over_the_runs_side_by_side():
    runs = [{"cvcl": 0.5, "supervised": 0.25}, {"cvcl": 0.25, "supervised": 0.25}]
    assert threads.throughput(runs) == {"cvcl": 6.0, "supervised": 8.0}


def test_each_layout_runs_on_the_threads_it_names_and_the_ratio_is_its_figures(capsys):
    assert threads.main([*TINY, "--rounds", "1"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["threads"] == 2 and report["rounds"] == 1
    for method in ("supervised", "mean_teacher", "cvcl"):
        row = report[method]
        assert row["iterations_per_second_one_run"] > 0 and row["iterations_per_second_runs_side_by_side"] > 0
        assert row["ratio_runs_vs_threads"] == pytest.approx(
            row["iterations_per_second_runs_side_by_side"] / row["iterations_per_second_one_run"], rel=0.01
        )
