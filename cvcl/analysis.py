"""Comparing runs: MLflow runs -> pandas tables and plots (used by notebooks/ablations.ipynb).

Every function takes the runs as the DataFrame that :func:`load_runs` returns, one row per
finished run with the columns ``run_id``, ``run_name``, ``config`` (a readable name of the
method and its switches), ``method``, ``labeled``, ``seed``, one column per switch a method
declares (:attr:`cvcl.methods.Method.switches`: ``pcl_weight``, ``vcl_weight`` for cvcl; NaN
for the methods without that switch) and the metrics ``dice``, ``jaccard``, ``hd95``, ``asd``.

Runs that differ in any other tracked parameter (``model.norm``, ``train.iterations``, ...) are
different configurations: where a run's value is not the most common one, it is appended to
its ``config``, e.g. ``mean_teacher [model.norm=batch]`` (that suffix alone is the ``variant``
column, empty for the most common settings), so such runs are never averaged together.
Parameters tuned for each method on its own (``tuned``: say ``loss.consistency`` and
``train.lr``, each family at the value its validation runs chose) name configurations instead
of variants: ``mean_teacher {loss.consistency=1.0}`` is paired with ``supervised {train.lr=0.03}``
as two methods at their own best settings.

Differences between configs: :func:`paired_intervals` on the per-case metrics of
:func:`load_per_case` gives each one a 95% interval over seeds and test cases.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import cast

import numpy as np
import pandas as pd

from cvcl import methods, statistics
from cvcl.methods import Switch
from cvcl.settings import is_execution

METRICS = ("dice", "jaccard", "hd95", "asd")
PERCENT = ("dice", "jaccard")  # fractions in the runs, % (points) in the tables
LOWER_IS_BETTER = ("hd95", "asd")  # distances: a negative difference is an improvement
PER_CASE_ARTIFACT = "per_case.csv"  # logged by stages/evaluate.py at the artifact root
PER_CASE_LAST_ARTIFACT = "per_case_last.csv"  # the last iteration's weights (stages/evaluate.py)


def _switches() -> list[Switch]:
    """Every method's switches, each parameter once, in the methods' order."""
    found: dict[str, Switch] = {}
    for name in methods.names():
        for switch in methods.get(name).switches:
            found.setdefault(switch.param, switch)
    return list(found.values())


def _named() -> set[str]:
    """The parameters a configuration is already named by (its ``config`` and columns)."""
    return {"method", "labeled", "seed", *(s.param for s in _switches())}


def config_name(method: str, values: Mapping[str, float]) -> str:
    """``cvcl (pcl 1, vcl 0) = PCL only``: the method and its named switches, read from
    ``values`` (dotted parameter names -> values; a switch at its ``quiet`` value is not
    spelt), then the configuration's alias where the method declares one
    (:attr:`cvcl.methods.Method.aliases`: ``= mean teacher``, ``= released code: supervised +
    VCL``); the bare name for a method without switches, or one no longer in
    :mod:`cvcl.methods` (older runs)."""
    if method not in methods.names() or not methods.get(method).switches:
        return method
    declared = methods.get(method)
    shown = declared.named_switches(values)
    name = f"{method} ({', '.join(f'{s.label} {v:g}' for s, v in shown)})"
    alias = declared.alias(values)
    return f"{name} = {alias}" if alias else name


ITERATIONS = ("chosen", "last")  # which model of a run the figures are of (docs/experiments.md)


def last_iteration_view(raw: pd.DataFrame) -> pd.DataFrame:
    """``mlflow.search_runs`` output with each metric of :data:`METRICS` replaced by the last
    iteration's (``<metric>_last``). A run evaluated before the ``_last`` figures existed keeps
    its own figures only when its model was the last iteration's (no ``checkpoint`` tag, or
    ``last``); a ``best_val`` run without them is dropped."""
    raw = raw.copy()
    tag = raw["tags.checkpoint"] if "tags.checkpoint" in raw else pd.Series(None, index=raw.index, dtype=object)
    was_last = tag.isna() | (tag == "last")
    for m in METRICS:
        last = raw[f"metrics.{m}_last"] if f"metrics.{m}_last" in raw else pd.Series(np.nan, index=raw.index)
        raw[f"metrics.{m}"] = last.where(last.notna(), raw[f"metrics.{m}"].where(was_last))
    return raw


def load_runs(
    experiment: str, tracking_uri: str | None = None, tuned: Sequence[str] = (), iteration: str = "chosen"
) -> pd.DataFrame:
    """Finished runs of an MLflow experiment as a tidy DataFrame (see the module docstring;
    ``tuned``: dotted parameters chosen per method, named in ``config`` but not variants;
    ``iteration``: the figures of the model each run chose, or of its last iteration's,
    :func:`last_iteration_view`)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    raw = mlflow.search_runs(
        experiment_names=[experiment], filter_string="attributes.status = 'FINISHED'", output_format="pandas"
    )
    if iteration == "last" and not raw.empty and "metrics.dice" in raw:
        raw = last_iteration_view(raw)
    return tidy_runs(raw, tuned)


def tidy_runs(raw: pd.DataFrame, tuned: Sequence[str] = ()) -> pd.DataFrame:
    """Reshape ``mlflow.search_runs`` output; runs without final metrics are dropped.
    ``tuned`` parameters that differ between runs are named in ``config`` as ``{name=value}``
    and left out of ``variant``."""
    switches = _switches()
    if raw.empty or "metrics.dice" not in raw:
        return pd.DataFrame(
            columns=[
                "run_id",
                "run_name",
                "config",
                "method",
                "labeled",
                "seed",
                *(s.column for s in switches),
                *METRICS,
                "variant",
            ]
        )
    raw = raw[raw["metrics.dice"].notna()]
    df = pd.DataFrame(
        {
            "run_id": raw["run_id"],
            "run_name": raw.get("tags.mlflow.runName"),
            "method": raw["params.method"],
            "labeled": raw["params.labeled"].astype(int),
            "seed": raw["params.seed"].astype(int),
            **{s.column: _switch_column(raw, s) for s in switches},
            **{m: raw[f"metrics.{m}"].astype(float) for m in METRICS},
        }
    )
    # a switch only means something for the methods that declare it
    for switch in switches:
        declaring = [n for n in methods.names() if switch in methods.get(n).switches]
        df.loc[~df["method"].isin(declaring), switch.column] = np.nan
    names = [config_name(row["method"], {s.param: row[s.column] for s in switches}) for _, row in df.iterrows()]
    # a run names only the values that differ from the most common one: short, still unique
    own = _uncommon(_labeled_only_common(raw, _varying_params(raw, only=set(tuned))))
    names = [f"{n} {{{o}}}" if o else n for n, o in zip(names, own, strict=True)]
    variant = _uncommon(_varying_params(raw, skip=set(tuned)))
    names = [f"{n} [{v}]" if v else n for n, v in zip(names, variant, strict=True)]
    df.insert(2, "config", names)
    df["variant"] = variant
    return df.reset_index(drop=True)


def _labeled_only_common(raw: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """``values`` with the ``loss.*`` settings of labeled-only runs (supervised) set to the most
    common value of the other runs: the unlabeled terms' settings mean nothing to them, and a
    name such as ``supervised {loss.consistency=1.0}`` would say they do."""
    semi = raw["params.method"].map(lambda m: m in methods.names() and methods.get(m).semi_supervised)
    values = values.copy()
    for col in [c for c in values.columns if c.startswith("params.loss.")]:
        if semi.any():
            values.loc[~semi, col] = _most_common(values.loc[semi, col])
    return values


def _uncommon(values: pd.DataFrame) -> list[str]:
    """Per run, the values of :func:`_varying_params` that are not the most common one, spelt
    ``model.norm=batch train.lr=0.03`` ("" for a run at the common settings)."""
    common = {str(col): _most_common(values[col]) for col in values.columns}
    return [
        " ".join(f"{str(col)[len('params.') :]}={v}" for col, v in row.items() if v != common[str(col)])
        for _, row in values.iterrows()
    ]


def _switch_column(raw: pd.DataFrame, switch: Switch) -> pd.Series:
    """A switch's values in the runs; runs logged before a ``quiet`` switch existed get that value."""
    column = f"params.{switch.param}"
    if column not in raw:
        if switch.quiet is None:
            raise KeyError(f"the runs have no parameter {switch.param}")
        return pd.Series(switch.quiet, index=raw.index, dtype=float)
    values = raw[column].astype(float)
    return values if switch.quiet is None else values.fillna(switch.quiet)


def _varying_params(
    raw: pd.DataFrame, skip: Collection[str] = frozenset(), only: Collection[str] | None = None
) -> pd.DataFrame:
    """The ``params.*`` columns, other than the named and execution ones (and ``skip``; within
    ``only`` when given), that take more than one value, as strings. Runs that lack a parameter
    (logged before it existed) get its most common value: a parameter is added with the old
    behaviour as its default."""
    out, named = {}, _named()
    for col in sorted(c for c in raw.columns if c.startswith("params.")):
        key = col[len("params.") :]
        present = raw[col].dropna().astype(str)
        if key in named or is_execution(key) or key in skip or present.empty or (only is not None and key not in only):
            continue
        values = raw[col].astype(str).where(raw[col].notna(), _most_common(present))
        if values.nunique() > 1:
            out[col] = values
    return pd.DataFrame(out, index=raw.index)


def _most_common(values: pd.Series) -> str:
    return str(values.value_counts().sort_index().idxmax())  # ties: the first by name (the values are strings)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (config, labeled), with the number of seeds.

    Columns: ``config``, ``labeled``, ``n``, and ``<metric>_mean`` / ``<metric>_std`` for each
    metric (Dice and Jaccard in %, as the papers' tables).
    """
    scaled = df.copy()
    for m in ("dice", "jaccard"):
        scaled[m] = scaled[m] * 100
    grouped = scaled.groupby(["config", "labeled"], sort=True)
    out = grouped[list(METRICS)].agg(["mean", "std"])
    # agg() with a list makes (metric, statistic) columns, a MultiIndex (pandas-stubs: Index[str])
    out.columns = [f"{m}_{s}" for m, s in cast(pd.MultiIndex, out.columns)]
    out.insert(0, "n", grouped.size())
    return out.reset_index()


def formatted_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``mean +- std`` strings, one column per metric, as a paper table."""
    out = summary[["config", "labeled", "n"]].copy()
    for m in METRICS:
        out[m] = [
            f"{a:.2f} ± {b:.2f}" if not math.isnan(b) else f"{a:.2f}"
            for a, b in zip(summary[f"{m}_mean"], summary[f"{m}_std"], strict=True)
        ]
    return out


def full_cvcl_config(df: pd.DataFrame) -> str | None:
    """The config of CVCL with every switch on (the one with most runs when several weights
    were tried), or None when there is none."""
    on = df["method"] == "cvcl"
    for switch in methods.get("cvcl").switches:
        on &= df[switch.column] > 0
    both = df[on]
    if both.empty:
        return None
    return str(both["config"].value_counts().index[0])


def paired_comparison(df: pd.DataFrame, reference: str | None = None, metric: str = "dice") -> pd.DataFrame:
    """CVCL against every other config *of the same variant* (same other params: a 1800-
    iteration CVCL is not paired with a 600-iteration baseline), paired by (labeled, seed).

    ``reference`` defaults to :func:`full_cvcl_config` within each variant that has one.
    Columns: ``reference``, ``baseline``, ``labeled``, ``pairs``, ``mean_diff`` (reference minus
    baseline, in Dice points), ``std_diff``, ``wins`` (seeds where the reference is better),
    ``p_value`` (paired t-test; NaN with fewer than 2 pairs).

    This sees only each run's mean over the test cases, so it says nothing about how much the
    difference owes to the particular test cases; with a handful of seeds neither the t-test
    nor a bootstrap over seeds alone is much to go on. For intervals a reader can trust (over
    seeds *and* cases) use :func:`paired_intervals` with :func:`load_per_case`.
    """
    rows = [row for ref, v in _references(df, reference) for row in _paired_rows(df[_variants(df) == v], ref, metric)]
    return pd.DataFrame(
        rows, columns=["reference", "baseline", "labeled", "pairs", "mean_diff", "std_diff", "wins", "p_value"]
    )


def _variants(df: pd.DataFrame) -> pd.Series:
    return df["variant"] if "variant" in df else pd.Series("", index=df.index)


def _references(df: pd.DataFrame, reference: str | None) -> list[tuple[str, str]]:
    """(reference config, its variant): ``reference`` alone, else the full CVCL of each variant."""
    variants = _variants(df)
    if reference is not None:
        chosen = variants[df["config"] == reference]
        return [(reference, chosen.iloc[0] if len(chosen) else "")]
    refs = [(full_cvcl_config(df[variants == v]), v) for v in sorted(set(variants))]
    return [(ref, v) for ref, v in refs if ref is not None]


def _paired_rows(df: pd.DataFrame, reference: str, metric: str) -> list[dict]:
    from scipy import stats

    # repeated runs of one (config, labeled, seed) are averaged, so each seed pairs once
    ref = df[df["config"] == reference].groupby(["labeled", "seed"])[metric].mean()
    rows = []
    for (config, labeled), group in df[df["config"] != reference].groupby(["config", "labeled"]):
        base = group.groupby(["labeled", "seed"])[metric].mean()
        common = ref.index.intersection(base.index)
        if len(common) == 0:
            continue
        a, b = ref.loc[common].to_numpy() * 100, base.loc[common].to_numpy() * 100
        diff = a - b
        p = float(stats.ttest_rel(a, b).pvalue) if len(diff) >= 2 and np.std(diff) > 0 else math.nan
        rows.append(
            {
                "reference": reference,
                "baseline": config,
                "labeled": labeled,
                "pairs": len(diff),
                "mean_diff": diff.mean(),
                "std_diff": diff.std(ddof=1) if len(diff) > 1 else math.nan,
                "wins": int((diff > 0).sum()),
                "p_value": p,
            }
        )
    return rows


def load_per_case(runs: pd.DataFrame, tracking_uri: str | None = None, iteration: str = "chosen") -> pd.DataFrame:
    """The per-case metrics of ``runs`` (from :func:`load_runs`), read from each run's
    ``per_case.csv`` artifact, in long format: one row per (run, test case) with the columns
    ``run_id``, ``config``, ``variant``, ``labeled``, ``seed``, ``case_id`` (a string) and
    :data:`METRICS` (Dice and Jaccard as fractions, like the runs table; distances in the
    evaluation's unit, NaN where undefined). A run without the artifact (evaluate not logged,
    or an older run) is skipped with a warning. ``tracking_uri``: default MLflow's current one.
    ``iteration="last"`` reads ``per_case_last.csv`` where the run has it (the last iteration's
    model), else ``per_case.csv`` (a run whose model was the last iteration's: :func:`load_runs`
    with the same ``iteration`` keeps no other).
    """
    import tempfile

    import mlflow
    from mlflow.exceptions import MlflowException

    from cvcl.tracking.store import quiet_mlflow_logs

    quiet_mlflow_logs()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    columns = ["run_id", "config", "variant", "labeled", "seed", "case_id", *METRICS]
    frames = []
    with tempfile.TemporaryDirectory(prefix="cvcl-per-case-") as tmp:
        for _, run in runs.iterrows():
            try:
                path = None
                if iteration == "last":
                    try:
                        path = mlflow.artifacts.download_artifacts(
                            run_id=run["run_id"],
                            artifact_path=PER_CASE_LAST_ARTIFACT,
                            dst_path=os.path.join(tmp, run["run_id"]),
                            tracking_uri=tracking_uri,
                        )
                    except (MlflowException, OSError):
                        path = None  # evaluated before the last-iteration figures: its model is the last
                path = path or mlflow.artifacts.download_artifacts(
                    run_id=run["run_id"],
                    artifact_path=PER_CASE_ARTIFACT,
                    dst_path=os.path.join(tmp, run["run_id"]),
                    tracking_uri=tracking_uri,
                )
            except (MlflowException, OSError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                warnings.warn(
                    f"run {run['run_id']} ({run['config']}): no {PER_CASE_ARTIFACT}, skipped ({first})", stacklevel=2
                )
                continue
            cases = pd.read_csv(path, dtype={"case_id": str})
            frames.append(
                pd.DataFrame(
                    {
                        **{key: run[key] for key in ("run_id", "config")},
                        "variant": run.get("variant", ""),
                        **{key: run[key] for key in ("labeled", "seed")},
                        "case_id": cases["case_id"],
                        **{m: cases[m].astype(float) if m in cases else math.nan for m in METRICS},
                    },
                    columns=columns,
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def chain_pairs(
    runs: pd.DataFrame, chain: Sequence[str] = ("supervised", "mean_teacher", "cvcl")
) -> list[tuple[str, str]]:
    """(reference, baseline) config pairs along ``chain`` (methods, each adding to the one
    before), per variant: ``(mean_teacher, supervised)``, ``(cvcl, mean_teacher)``; a method
    without runs is skipped, so its neighbours are paired. A method's config is its most common
    one (cvcl: :func:`full_cvcl_config`). Empty when fewer than two are there."""
    variants, pairs = _variants(runs), []
    for v in sorted(set(variants)):
        same = runs[variants == v]
        present = []
        for method in chain:
            ran = same[same["method"] == method]
            config = (
                full_cvcl_config(same)
                if method == "cvcl"
                else (str(ran["config"].value_counts().index[0]) if len(ran) else None)
            )
            if config is not None:
                present.append(config)
        pairs += list(zip(present[1:], present[:-1], strict=True))
    return pairs


def paired_intervals(
    runs: pd.DataFrame,
    per_case: pd.DataFrame,
    reference: str | None = None,
    metric: str = "dice",
    n_boot: int = 10_000,
    seed: int = 0,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Each paired difference (reference minus baseline) with a 95% bootstrap interval over
    seeds and test cases (:mod:`cvcl.statistics`), per labeled count.

    ``per_case``: rows ``run_id``, ``case_id``, ``metric`` (:func:`load_per_case`); each run's
    config, labeled count and seed are read from ``runs``, so filtering ``runs`` filters this.
    Compared: the explicit ``pairs`` of configs when given; else ``reference`` (default: the
    full CVCL of each variant, as :func:`paired_comparison`) against every other config of its
    variant. A pair uses the seeds both configs have and the test cases both were scored on
    (repeated runs of a seed are averaged per case), as ``diff[seed, case]``: in points for
    Dice and Jaccard, in the evaluation's unit for distances, where lower is better (so a
    negative difference reads "better"). ``seed`` fixes the bootstrap's draws.

    Columns: ``reference``, ``baseline``, ``labeled``, ``metric``, ``seeds``, ``cases`` (after
    dropping missing values), ``mean_diff``, ``ci_low``, ``ci_high``, ``wilcoxon_p`` (over the
    seed-averaged per-case differences; NaN under 6 cases), ``resolved`` (the interval excludes
    0) and ``verdict`` (``+3.12 [+1.05, +5.20]: better``, or ``...: not resolved``).
    """
    if pairs is None:
        variants = _variants(runs)
        pairs = [
            (ref, base)
            for ref, v in _references(runs, reference)
            for base in sorted(set(runs.loc[variants == v, "config"]) - {ref})
        ]
    keys = runs[["run_id", "config", "labeled", "seed"]]
    scores = per_case[["run_id", "case_id", metric]].merge(keys, on="run_id")
    scores[metric] = scores[metric].astype(float) * (100 if metric in PERCENT else 1)
    # one value per (config, labeled, seed, case): repeated runs of a seed are averaged (pandas-stubs
    # types a group's key as tuple[Hashable, ...]: grouped by two columns, it is (config, labeled))
    grids = {
        cast("tuple[str, int]", key): g.groupby(["seed", "case_id"])[metric].mean().unstack("case_id")
        for key, g in scores.groupby(["config", "labeled"])
    }
    rows = []
    for ref, base in pairs:
        for labeled in sorted({lab for c, lab in grids if c == ref} & {lab for c, lab in grids if c == base}):
            a, b = grids[(ref, labeled)], grids[(base, labeled)]
            seeds, cases = a.index.intersection(b.index), a.columns.intersection(b.columns)
            if len(seeds) == 0 or len(cases) == 0:
                continue
            diff = a.loc[seeds, cases].to_numpy() - b.loc[seeds, cases].to_numpy()
            result = statistics.paired_difference(diff, n_boot, seed, higher_is_better=metric not in LOWER_IS_BETTER)
            rows.append(
                {
                    "reference": ref,
                    "baseline": base,
                    "labeled": labeled,
                    "metric": metric,
                    "seeds": result.n_seeds,
                    "cases": result.n_cases,
                    "mean_diff": result.mean_diff,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "wilcoxon_p": result.wilcoxon_p,
                    "resolved": result.resolved,
                    "verdict": result.verdict,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "reference",
            "baseline",
            "labeled",
            "metric",
            "seeds",
            "cases",
            "mean_diff",
            "ci_low",
            "ci_high",
            "wilcoxon_p",
            "resolved",
            "verdict",
        ],
    )


def format_intervals(intervals: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`paired_intervals` for reading: ``difference`` as ``+3.12 [+1.05, +5.20]``,
    ``wilcoxon_p`` as text, and ``result``: better / worse / not resolved (the interval holds 0)."""
    out = intervals[["reference", "baseline", "labeled", "metric", "seeds", "cases"]].copy()
    out["difference"] = [
        statistics.format_interval(m, lo, hi, digits)
        for m, lo, hi in zip(intervals["mean_diff"], intervals["ci_low"], intervals["ci_high"], strict=True)
    ]
    out["wilcoxon_p"] = ["n/a" if math.isnan(p) else f"{p:.3g}" for p in intervals["wilcoxon_p"]]
    out["result"] = [verdict.rsplit(": ", 1)[-1] for verdict in intervals["verdict"]]
    return out


def plot_dice_vs_labeled(df: pd.DataFrame, ax=None):
    """Mean Dice (error bars: std over seeds) against the number of labeled volumes, per config."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    summary = summary_table(df)
    for config, group in summary.groupby("config"):
        ax.errorbar(
            group["labeled"], group["dice_mean"], yerr=group["dice_std"].fillna(0), marker="o", capsize=3, label=config
        )
    ax.set_xlabel("labeled volumes")
    ax.set_ylabel("Dice (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def dice_grid(df: pd.DataFrame, labeled: int, variant: str | None = None) -> pd.DataFrame:
    """Mean Dice (%) of cvcl over (pcl_weight rows, vcl_weight columns) at one labeled count,
    for one ``variant`` (the other-parameter suffix of the configs; default: the variant with
    the most cvcl runs), so that runs of different settings are never averaged into a cell."""
    cvcl = df[(df["method"] == "cvcl") & (df["labeled"] == labeled)]
    if "mt_weight" in cvcl:  # the grid is over the prototype terms on top of the mean teacher
        cvcl = cvcl[cvcl["mt_weight"] != 0]
    if "variant" in cvcl and not cvcl.empty:
        cvcl = cvcl[cvcl["variant"] == _grid_variant(df, labeled, variant)]
    rows, columns = _grid_axes()
    return cvcl.pivot_table(index=rows, columns=columns, values="dice", aggfunc="mean") * 100


def _grid_axes() -> tuple[str, str]:
    """The columns of cvcl's last two switches, the prototype terms: the grid's rows and columns
    (pcl_weight, vcl_weight)."""
    first, second = (s.column for s in methods.get("cvcl").switches[-2:])
    return first, second


def _grid_variant(df: pd.DataFrame, labeled: int, variant: str | None) -> str:
    """``variant`` when given, else the variant with the most cvcl runs at ``labeled`` ("" if none)."""
    if variant is not None:
        return variant
    cvcl = df.loc[(df["method"] == "cvcl") & (df["labeled"] == labeled)]
    if "variant" not in cvcl or cvcl.empty:
        return ""
    return cvcl["variant"].value_counts().index[0]


def plot_weight_heatmap(df: pd.DataFrame, labeled: int, ax=None, variant: str | None = None):
    """Heatmap of :func:`dice_grid` with the values written in the cells."""
    import matplotlib.pyplot as plt

    grid = dice_grid(df, labeled, variant)
    ax = ax or plt.subplots(figsize=(4, 3.5))[1]
    image = ax.imshow(grid.to_numpy(), cmap="viridis", origin="lower")
    ax.set_xticks(range(len(grid.columns)), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(len(grid.index)), [f"{v:g}" for v in grid.index])
    rows, columns = _grid_axes()
    ax.set_xlabel(columns)
    ax.set_ylabel(rows)
    chosen = _grid_variant(df, labeled, variant)
    ax.set_title(f"cvcl Dice (%), {labeled} labeled" + (f"\n{chosen}" if chosen else ""))
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            value = grid.to_numpy()[i, j]
            if not math.isnan(value):
                ax.text(j, i, f"{value:.1f}", ha="center", va="center", color="white")
    ax.figure.colorbar(image, ax=ax)
    return ax
