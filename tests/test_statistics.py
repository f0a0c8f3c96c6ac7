import math
import time

import numpy as np
import pytest
from scipy import stats as scipy_stats

from cvcl import statistics


def grid(offset: float, noise: float, seeds: int = 3, cases: int = 20, seed: int = 0) -> np.ndarray:
    """diff[seed, case]: a constant ``offset`` plus a case effect and a seed effect plus noise."""
    rng = np.random.default_rng(seed)
    case_effect = rng.normal(0, noise, size=(1, cases))
    seed_effect = rng.normal(0, noise / 2, size=(seeds, 1))
    return offset + case_effect + seed_effect + rng.normal(0, noise / 2, size=(seeds, cases))


def test_a_clear_effect_is_resolved_and_its_interval_covers_the_true_mean():
    result = statistics.paired_difference(grid(3.0, 1.0))
    assert result.n_seeds == 3 and result.n_cases == 20
    assert result.ci_low < 3.0 < result.ci_high
    assert result.ci_low > 0 and result.resolved
    assert result.verdict.endswith(": better")
    assert result.verdict.startswith(f"{result.mean_diff:+.2f} [{result.ci_low:+.2f}, {result.ci_high:+.2f}]")


def test_a_null_effect_holds_zero_and_is_not_resolved():
    result = statistics.paired_difference(grid(0.0, 1.0, seed=1))
    assert result.ci_low < 0 < result.ci_high
    assert not result.resolved
    assert result.verdict.endswith(": not resolved")


def test_the_interval_covers_the_true_mean_in_most_repeats():
    # a 95% interval should miss rarely; with 3 seeds it is somewhat narrow, so ask for 80 of 100
    intervals = [statistics.bootstrap_interval(grid(1.0, 1.0, seed=s), n_boot=2000, seed=s) for s in range(100)]
    hits = sum(low < 1.0 < high for low, high in intervals)
    assert hits >= 80


def test_lower_is_better_flips_the_verdict():
    better = statistics.paired_difference(grid(-3.0, 1.0), higher_is_better=False)
    worse = statistics.paired_difference(grid(+3.0, 1.0), higher_is_better=False)
    assert better.direction == "better" and worse.direction == "worse"


def test_the_bootstrap_is_reproducible_with_a_seed_and_differs_without():
    diff = grid(1.0, 1.0)
    assert np.array_equal(statistics.bootstrap_means(diff, 500, seed=7), statistics.bootstrap_means(diff, 500, seed=7))
    assert not np.array_equal(
        statistics.bootstrap_means(diff, 500, seed=7), statistics.bootstrap_means(diff, 500, seed=8)
    )
    assert statistics.paired_difference(diff, seed=3) == statistics.paired_difference(diff, seed=3)


def test_both_seeds_and_cases_are_resampled():
    # seed-only variation: replicate variance ~ var(a) / n_seeds; case-only: ~ var(b) / n_cases
    a = np.array([[-2.0], [0.0], [1.0], [3.0], [-1.0]])
    b = np.linspace(-4, 4, 20)[None, :]
    seed_only = statistics.bootstrap_means(np.repeat(a, 20, axis=1), 20_000, seed=0)
    case_only = statistics.bootstrap_means(np.repeat(b, 5, axis=0), 20_000, seed=0)
    assert seed_only.var() == pytest.approx(a.var() / 5, rel=0.05)
    assert case_only.var() == pytest.approx(b.var() / 20, rel=0.05)
    both = statistics.bootstrap_means(np.repeat(a, 20, axis=1) + np.repeat(b, 5, axis=0), 20_000, seed=0)
    assert both.var() == pytest.approx(a.var() / 5 + b.var() / 20, rel=0.05)
    assert both.mean() == pytest.approx(a.mean() + b.mean(), abs=0.05)


def test_missing_cases_are_dropped_for_every_seed_and_missing_seeds_entirely():
    diff = np.array([[1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 3.0, 4.0], [np.nan] * 4])  # a seed that was not run
    clean = statistics.clean_grid(diff)
    assert clean.shape == (2, 3)
    assert np.array_equal(clean, [[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    result = statistics.paired_difference(diff)
    assert (result.n_seeds, result.n_cases) == (2, 3)
    assert result.mean_diff == pytest.approx(7 / 3)
    assert not math.isnan(result.ci_low)


def test_too_little_data_gives_no_interval_and_is_not_resolved():
    one = statistics.paired_difference([[5.0]])
    assert math.isnan(one.ci_low) and not one.resolved
    assert one.verdict == "+5.00 [n/a]: not resolved"
    empty = statistics.paired_difference(np.full((2, 3), np.nan))
    assert (empty.n_seeds, empty.n_cases) == (0, 0) and math.isnan(empty.mean_diff) and not empty.resolved


def test_wilcoxon_matches_scipy_on_the_seed_averaged_cases():
    diff = grid(0.5, 1.0, seeds=4, cases=12, seed=5)
    assert statistics.wilcoxon_p(diff) == pytest.approx(scipy_stats.wilcoxon(diff.mean(axis=0)).pvalue)
    assert statistics.paired_difference(diff).wilcoxon_p == pytest.approx(statistics.wilcoxon_p(diff))


def test_wilcoxon_is_nan_with_few_cases_or_no_difference():
    assert math.isnan(statistics.wilcoxon_p(grid(1.0, 1.0, cases=5)))
    assert not math.isnan(statistics.wilcoxon_p(grid(1.0, 1.0, cases=6)))
    assert math.isnan(statistics.wilcoxon_p(np.zeros((3, 10))))


def test_ten_thousand_replicates_are_fast():
    diff = grid(1.0, 1.0, seeds=5, cases=20)
    start = time.perf_counter()
    result = statistics.paired_difference(diff, n_boot=10_000)
    assert time.perf_counter() - start < 1.0
    assert result.ci_low < result.mean_diff < result.ci_high


def test_format_interval_is_signed():
    assert statistics.format_interval(3.123, 1.05, 5.2) == "+3.12 [+1.05, +5.20]"
    assert statistics.format_interval(-0.4, -1.9, 1.1, digits=1) == "-0.4 [-1.9, +1.1]"
    row = statistics.paired_difference(grid(3.0, 1.0)).as_row()
    assert row["resolved"] is True and row["verdict"].endswith("better") and row["n_cases"] == 20
