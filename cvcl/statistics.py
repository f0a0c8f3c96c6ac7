"""Paired-difference inference: is configuration A really better than B on this test set?

The input everywhere is a grid of paired differences ``diff[seed, case]``, shape
``(n_seeds, n_cases)``: the metric of the *reference* configuration minus that of the *baseline*,
both trained with the same seed and scored on the same test case, in the metric's reporting
unit (Dice and Jaccard in percentage points, distances in the evaluation's unit).

Two sources of chance make a difference look larger or smaller than it is: the training seed
(another seed, another network) and the test cases (another test set, other scores). The
interval here accounts for both with a two-level (crossed) paired bootstrap, and a Wilcoxon
signed-rank test over the cases gives a second, rank-based opinion.

Missing values: a NaN marks a (seed, case) without a score. A seed whose row is all NaN (that
seed was not run) is dropped; then every case (column) with a NaN left in any seed is dropped
*for all seeds*, so that each seed is averaged over the same cases and the pairing stays exact.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

MIN_WILCOXON_CASES = 6  # with 5 cases the smallest two-sided exact p is 2/32 = 0.0625: never below 0.05


def clean_grid(diff: ArrayLike) -> np.ndarray:
    """The complete part of ``diff`` (see the module docstring for the rule).

    ``diff``: shape ``(n_seeds, n_cases)`` (a 1-D array is one seed). Returns a float array of
    shape ``(n_seeds', n_cases')`` without NaN; it may have zero rows or columns.
    """
    grid = np.asarray(diff, dtype=float)
    if grid.ndim == 1:
        grid = grid[None, :]
    if grid.ndim != 2:
        raise ValueError(f"expected diff[seed, case], a 2-D array; got shape {grid.shape}")
    grid = grid[~np.isnan(grid).all(axis=1)]  # seeds not run at all
    return grid[:, ~np.isnan(grid).any(axis=0)]  # cases missing in any remaining seed, for all seeds


def bootstrap_means(diff: ArrayLike, n_boot: int = 10_000, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Bootstrap replicates of the mean difference, shape ``(n_boot,)``, in ``diff``'s unit.

    Each replicate draws ``n_seeds`` seeds with replacement and, independently, ``n_cases``
    cases with replacement; the one case draw is shared by all the drawn seeds of that
    replicate (seeds and cases are crossed factors: a hard case is hard for every seed, and
    the shared draw keeps that correlation). The replicate is the mean over the drawn
    ``seeds x cases`` grid. ``seed`` seeds a :func:`numpy.random.default_rng` (or is one).
    """
    grid = clean_grid(diff)
    n_seeds, n_cases = grid.shape
    if n_seeds == 0 or n_cases == 0:
        return np.full(n_boot, math.nan)
    rng = np.random.default_rng(seed)
    # Drawing with replacement is a multinomial count per seed and per case; the mean over the
    # drawn grid is then (seed counts) @ grid @ (case counts) / (n_seeds * n_cases), for all
    # replicates at once: no loop, (n_boot, n_cases) memory.
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot)
    case_counts = rng.multinomial(n_cases, np.full(n_cases, 1 / n_cases), size=n_boot)
    return np.einsum("bc,bc->b", seed_counts @ grid, case_counts) / (n_seeds * n_cases)


def bootstrap_interval(
    diff: ArrayLike, n_boot: int = 10_000, seed: int | np.random.Generator = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval ``(low, high)`` of the mean difference at ``level`` (0.95: the 2.5th
    and 97.5th percentiles of :func:`bootstrap_means`). NaN when fewer than two values are
    left: one number has no spread to measure. With few seeds the interval is somewhat
    narrow (a bootstrap over n values has (n - 1)/n of their variance): read it with care."""
    if clean_grid(diff).size < 2:
        return math.nan, math.nan
    tail = (1 - level) / 2
    low, high = np.quantile(bootstrap_means(diff, n_boot, seed), [tail, 1 - tail])
    return float(low), float(high)


def wilcoxon_p(diff: ArrayLike, min_cases: int = MIN_WILCOXON_CASES) -> float:
    """Two-sided p-value of :func:`scipy.stats.wilcoxon` (default options) on the per-case
    differences averaged over seeds, shape ``(n_cases,)``. NaN with fewer than ``min_cases``
    cases (the test could not reach 0.05) or when every difference is zero."""
    from scipy import stats

    grid = clean_grid(diff)
    if grid.shape[0] == 0 or grid.shape[1] < min_cases:
        return math.nan
    per_case = grid.mean(axis=0)
    if not np.any(per_case != 0):
        return math.nan
    return float(stats.wilcoxon(per_case).pvalue)


def format_interval(mean: float, low: float, high: float, digits: int = 2) -> str:
    """``+3.12 [+1.05, +5.20]``: signed, so the direction is never lost; ``[n/a]`` without an interval."""
    centre = f"{mean:+.{digits}f}" if not math.isnan(mean) else "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{centre} [n/a]"
    return f"{centre} [{low:+.{digits}f}, {high:+.{digits}f}]"


@dataclass(frozen=True)
class PairedDifference:
    """The mean of ``diff[seed, case]`` with its bootstrap interval and Wilcoxon p-value.

    ``mean_diff``, ``ci_low``, ``ci_high``: in the metric's reporting unit (reference minus
    baseline). ``n_seeds``, ``n_cases``: the grid after dropping missing values.
    ``higher_is_better``: False for distances (hd95, asd), where a negative difference is
    the reference doing better. ``level``: the interval's coverage (0.95).
    """

    mean_diff: float
    ci_low: float
    ci_high: float
    n_seeds: int
    n_cases: int
    wilcoxon_p: float
    higher_is_better: bool = True
    level: float = 0.95

    @property
    def resolved(self) -> bool:
        """True when the interval excludes 0 (an interval that could not be computed does not)."""
        return self.ci_low > 0 or self.ci_high < 0  # False for NaN bounds

    @property
    def direction(self) -> str:
        """``better`` / ``worse`` (the reference against the baseline) or ``not resolved``."""
        if not self.resolved:
            return "not resolved"
        return "better" if (self.mean_diff > 0) == self.higher_is_better else "worse"

    @property
    def verdict(self) -> str:
        """``+3.12 [+1.05, +5.20]: better``, ``-0.40 [-1.90, +1.10]: not resolved``."""
        return f"{format_interval(self.mean_diff, self.ci_low, self.ci_high)}: {self.direction}"

    def as_row(self) -> dict:
        """The fields plus ``resolved`` and ``verdict``, for a table row."""
        return {**asdict(self), "resolved": self.resolved, "verdict": self.verdict}


def paired_difference(
    diff: ArrayLike,
    n_boot: int = 10_000,
    seed: int | np.random.Generator = 0,
    level: float = 0.95,
    higher_is_better: bool = True,
) -> PairedDifference:
    """Everything about one grid ``diff[seed, case]`` (shape ``(n_seeds, n_cases)``, NaN allowed:
    see the module docstring): mean, bootstrap interval, Wilcoxon p-value, counts."""
    grid = clean_grid(diff)
    low, high = bootstrap_interval(grid, n_boot, seed, level)
    return PairedDifference(
        mean_diff=float(grid.mean()) if grid.size else math.nan,
        ci_low=low,
        ci_high=high,
        n_seeds=grid.shape[0] if grid.size else 0,
        n_cases=grid.shape[1] if grid.size else 0,
        wilcoxon_p=wilcoxon_p(grid),
        higher_is_better=higher_is_better,
        level=level,
    )
