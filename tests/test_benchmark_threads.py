"""benchmarks/threads.py: the side-by-side runs' throughput is summed over runs, a layout runs on
the threads it names, and the report's ratio is its own figures' (timings are not asserted)."""

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


def test_a_layout_runs_the_step_benchmark_on_the_threads_it_names():
    (seconds,) = threads.step_seconds(1, 1, TINY)
    assert set(seconds) == {"supervised", "mean_teacher", "cvcl"} and min(seconds.values()) > 0


def test_the_report_gives_each_methods_throughput_in_both_layouts_and_their_ratio(monkeypatch, capsys):
    calls = []

    def fake(n_threads, copies, step_args):
        calls.append((n_threads, copies))
        # one run on 2 threads: 1 s per iteration; each of 2 runs on 1 thread: 1.6 s
        return [{"supervised": 1.0 if copies == 1 else 1.6, "cvcl": 2.0 if copies == 1 else 4.0}] * copies

    monkeypatch.setattr(threads, "step_seconds", fake)
    assert threads.main([*TINY, "--rounds", "2"]) == 0
    assert calls == [(2, 1), (1, 2), (2, 1), (1, 2)]  # the layouts alternate
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["supervised"]["ratio_runs_vs_threads"] == pytest.approx(1.25)  # 2 / 1.6 against 1 / 1
    assert report["cvcl"]["ratio_runs_vs_threads"] == pytest.approx(1.0)  # 2 / 4 against 1 / 2
    assert report["cvcl"]["iterations_per_second_one_run"] == pytest.approx(0.5)
