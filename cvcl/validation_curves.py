"""Validation Dice against iteration, one line per configuration: where supervised saturates and
where each semi-supervised configuration peaks (docs/results-la.md, the notebook).

Reads the ``val_dice`` history MLflow holds for each run (logged every ``train.val_every``
iterations by the train stage on the ``split.val`` cases, never the test cases)::

    runs = analysis.load_runs("cvcl-la-curves", tuned=CURVE_KNOBS)
    curves = validation_curves(runs)
    plot_validation_curves(curves)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pandas as pd

# the knobs the curves' configurations differ by (named in each line's label)
CURVE_KNOBS = (
    "train.lr",
    "train.lr_schedule",
    "train.iterations",
    "train.labeled_bs",
    "model.norm",
    "model.bn_statistics",
    "loss.consistency",
    "loss.rampup_length",
)


def validation_curves(runs: pd.DataFrame, tracking_uri: str | None = None) -> pd.DataFrame:
    """Long format: ``run_id``, ``config``, ``seed``, ``iteration`` (1-based: the iterations done
    when validated) and ``val_dice`` (a fraction), for each run of ``runs`` (from
    :func:`cvcl.analysis.load_runs`) that logged ``val_dice``."""
    from mlflow import MlflowClient

    from cvcl.tracking.store import with_retries

    client = MlflowClient(tracking_uri=tracking_uri)
    rows = []
    for run in runs.itertuples():
        history = with_retries(partial(client.get_metric_history, str(run.run_id), "val_dice"))
        rows += [
            {"run_id": run.run_id, "config": run.config, "seed": run.seed, "iteration": m.step + 1, "val_dice": m.value}
            for m in history
        ]
    columns = ["run_id", "config", "seed", "iteration", "val_dice"]
    return pd.DataFrame(rows, columns=columns).sort_values(["config", "seed", "iteration"], ignore_index=True)


def peaks(curves: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and seed: the best validation Dice, the iteration it came at, and the
    last one's (Dice in %)."""
    out = []
    for (config, seed), g in curves.groupby(["config", "seed"], sort=True):
        g = g.reset_index(drop=True)
        best = g.iloc[int(g["val_dice"].to_numpy().argmax())]
        last = g.iloc[int(g["iteration"].to_numpy().argmax())]
        out.append(
            {
                "config": config,
                "seed": seed,
                "best_val_dice": 100 * best["val_dice"],
                "best_iteration": int(best["iteration"]),
                "last_val_dice": 100 * last["val_dice"],
                "last_iteration": int(last["iteration"]),
            }
        )
    return pd.DataFrame(out)


def plot_validation_curves(curves: pd.DataFrame, ax=None, order: Sequence[str] | None = None):
    """Validation Dice (%) against iteration, one line per configuration (a seed's own line where
    a configuration has several); the matplotlib axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    configs = list(order) if order is not None else sorted(curves["config"].unique())
    for config in configs:
        several = curves.loc[curves["config"] == config, "seed"].nunique() > 1
        for seed, g in curves[curves["config"] == config].groupby("seed"):
            label = f"{config} s{seed}" if several else config
            ax.plot(g["iteration"], 100 * g["val_dice"], marker="o", ms=3, label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation Dice (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax
