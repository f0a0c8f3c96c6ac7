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
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from cvcl import methods
from cvcl.methods import Switch
from cvcl.settings import EXECUTION

METRICS = ("dice", "jaccard", "hd95", "asd")


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
    """``cvcl (pcl 1, vcl 0)``: the method and its switches, read from ``values`` (dotted
    parameter names -> values); ``cvcl (pcl 0, vcl 0) = mean teacher`` when every switch is 0
    and the method declares what it then reduces to; the bare name for a method without
    switches, or one no longer in :mod:`cvcl.methods` (older runs)."""
    if method not in methods.names() or not methods.get(method).switches:
        return method
    declared = methods.get(method)
    switched = declared.switch_values(values)
    name = f"{method} ({', '.join(f'{s.label} {v:g}' for s, v in switched)})"
    if declared.reduces_to and all(v == 0 for _, v in switched):
        name += f" = {declared.reduces_to}"
    return name


def load_runs(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """Finished runs of an MLflow experiment as a tidy DataFrame (see the module docstring)."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    raw = mlflow.search_runs(experiment_names=[experiment], filter_string="attributes.status = 'FINISHED'",
                             output_format="pandas")
    return tidy_runs(raw)


def tidy_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """Reshape ``mlflow.search_runs`` output; runs without final metrics are dropped."""
    switches = _switches()
    if raw.empty or "metrics.dice" not in raw:
        return pd.DataFrame(columns=["run_id", "run_name", "config", "method", "labeled", "seed",
                                     *(s.column for s in switches), *METRICS, "variant"])
    raw = raw[raw["metrics.dice"].notna()]
    df = pd.DataFrame({
        "run_id": raw["run_id"],
        "run_name": raw.get("tags.mlflow.runName"),
        "method": raw["params.method"],
        "labeled": raw["params.labeled"].astype(int),
        "seed": raw["params.seed"].astype(int),
        **{s.column: raw[f"params.{s.param}"].astype(float) for s in switches},
        **{m: raw[f"metrics.{m}"].astype(float) for m in METRICS},
    })
    # a switch only means something for the methods that declare it
    for switch in switches:
        declaring = [n for n in methods.names() if switch in methods.get(n).switches]
        df.loc[~df["method"].isin(declaring), switch.column] = np.nan
    names = [config_name(row["method"], {s.param: row[s.column] for s in switches}) for _, row in df.iterrows()]
    # a run names only the values that differ from the most common one: short, still unique
    values = _varying_params(raw)
    common = {col: _most_common(values[col]) for col in values.columns}
    variant = [" ".join(f"{col[len('params.'):]}={v}" for col, v in row.items() if v != common[col])
               for _, row in values.iterrows()]
    names = [f"{n} [{v}]" if v else n for n, v in zip(names, variant)]
    df.insert(2, "config", names)
    df["variant"] = variant
    return df.reset_index(drop=True)


def _varying_params(raw: pd.DataFrame) -> pd.DataFrame:
    """The ``params.*`` columns, other than the named and execution ones, that take more than one
    value, as strings. Runs that lack a parameter (logged before it existed) get its most common
    value: a parameter is added with the old behaviour as its default."""
    out, named = {}, _named()
    for col in sorted(c for c in raw.columns if c.startswith("params.")):
        key = col[len("params."):]
        present = raw[col].dropna().astype(str)
        if key in named or key in EXECUTION or present.empty:
            continue
        values = raw[col].astype(str).where(raw[col].notna(), _most_common(present))
        if values.nunique() > 1:
            out[col] = values
    return pd.DataFrame(out, index=raw.index)


def _most_common(values: pd.Series) -> str:
    return values.value_counts().sort_index().idxmax()  # ties: the first by name


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
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out.insert(0, "n", grouped.size())
    return out.reset_index()


def formatted_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``mean +- std`` strings, one column per metric, as a paper table."""
    out = summary[["config", "labeled", "n"]].copy()
    for m in METRICS:
        out[m] = [f"{a:.2f} ± {b:.2f}" if not math.isnan(b) else f"{a:.2f}"
                  for a, b in zip(summary[f"{m}_mean"], summary[f"{m}_std"])]
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
    """
    variants = df["variant"] if "variant" in df else pd.Series("", index=df.index)
    if reference is not None:
        chosen = variants[df["config"] == reference]
        refs = [(reference, chosen.iloc[0] if len(chosen) else "")]
    else:
        refs = [(full_cvcl_config(df[variants == v]), v) for v in sorted(set(variants))]
    rows = [row for ref, v in refs if ref is not None
            for row in _paired_rows(df[variants == v], ref, metric)]
    return pd.DataFrame(rows, columns=["reference", "baseline", "labeled", "pairs", "mean_diff", "std_diff", "wins",
                                       "p_value"])


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
        rows.append({"reference": reference, "baseline": config, "labeled": labeled, "pairs": len(diff),
                     "mean_diff": diff.mean(), "std_diff": diff.std(ddof=1) if len(diff) > 1 else math.nan,
                     "wins": int((diff > 0).sum()), "p_value": p})
    return rows


def plot_dice_vs_labeled(df: pd.DataFrame, ax=None):
    """Mean Dice (error bars: std over seeds) against the number of labeled volumes, per config."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    summary = summary_table(df)
    for config, group in summary.groupby("config"):
        ax.errorbar(group["labeled"], group["dice_mean"], yerr=group["dice_std"].fillna(0), marker="o",
                    capsize=3, label=config)
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
    if "variant" in cvcl and not cvcl.empty:
        cvcl = cvcl[cvcl["variant"] == _grid_variant(df, labeled, variant)]
    rows, columns = _grid_axes()
    return cvcl.pivot_table(index=rows, columns=columns, values="dice", aggfunc="mean") * 100


def _grid_axes() -> tuple[str, str]:
    """The columns of cvcl's two switches: the grid's rows and columns (pcl_weight, vcl_weight)."""
    first, second = (s.column for s in methods.get("cvcl").switches)
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
