"""Score the EMA teacher of finished runs on their test cases, paired with the student they logged.

The pipeline scores the student (``infer.weights: student``); mean-teacher papers often report
the teacher. For every finished run of ``--experiment`` that logged a checkpoint with a teacher
(``model.pt``, semi-supervised methods), this predicts the cases of the run's own
``per_case.csv`` with the teacher, as the infer and evaluate stages do (the run's logged window
settings, the same processed cases, scored at the source resolution in the run's distance unit),
and prints teacher minus student per configuration, paired by seed and case, with 95% bootstrap
intervals (:mod:`cvcl.statistics`). ``--check-student`` first re-predicts one run's student and
stops unless it gives the run's logged per-case figures: the proof that the scoring here is the
stages' own::

    python results/teacher.py --experiment cvcl-la --tracking-uri sqlite:///mlflow.db \\
        --processed data/processed --labeled 8 --check-student --out teacher.csv
    python results/teacher.py --cases results/la-mini/teacher.csv    # the table again, from the CSV

Nothing is logged to the runs: their metrics stay the student's. The run records in
``results/`` carry no checkpoints, so the per-case CSV is what travels with the repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from cvcl import analysis
from cvcl.evaluation.cases import score_cases
from cvcl.inference.config import infer_config
from cvcl.inference.predictor import Predictor
from cvcl.io.atomic import atomic_path
from cvcl.params import Params
from cvcl.statistics import paired_difference

NETWORKS = ("student", "teacher")


def nested(flat: dict[str, str]) -> dict:
    """MLflow's flat, stringified params (``infer.stride: "[16, 16, 8]"``) as params.yaml's tree."""
    tree: dict = {}
    for key, text in flat.items():
        *sections, leaf = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = yaml.safe_load(text) if text not in ("None", "") else None
    return tree


def score_network(run_id: str, model: Path, cases: list[str], network: str, processed: Path, tmp: Path) -> pd.DataFrame:
    """``cases`` predicted by ``network`` of the run's checkpoint ``model`` with the run's logged
    window settings, and scored as the evaluate stage scores (its distance unit)."""
    import mlflow

    run = mlflow.get_run(run_id)
    cfg = infer_config(Params(nested(run.data.params), source=f"run {run_id}'s params"))
    cfg = dataclasses.replace(cfg, weights=network, device="cpu")
    out = tmp / f"{run_id}-{network}"
    Predictor.load(model, cfg).write_predictions(cases, processed, out, progress=False)
    unit = run.data.tags.get("distance_unit", "mm")
    return pd.DataFrame(score_cases(cases, processed, out, unit, progress=False))


def teacher_checkpoint(run_id: str, tmp: Path) -> Path | None:
    """The run's ``model.pt``, downloaded once into ``tmp``, when it holds a teacher."""
    import mlflow

    try:
        path = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model.pt", dst_path=str(tmp / run_id)))
    except Exception:  # an imported run record carries no checkpoint
        return None
    return path if torch.load(path, map_location="cpu", weights_only=True).get("teacher") is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=None, help="print the table of a CSV --out wrote, and stop")
    parser.add_argument("--experiment")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--processed", type=Path, help="the runs' data/processed")
    parser.add_argument("--labeled", type=int, nargs="*", default=None, help="only these labeled counts")
    parser.add_argument("--tuned", nargs="*", default=["loss.consistency", "train.lr"])
    parser.add_argument("--check-student", action="store_true", help="re-score one run's student first")
    parser.add_argument(
        "--out", type=Path, default=None, help="per-case CSV of both networks (a rerun scores only the runs it lacks)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.cases:
        print(format_differences(pd.read_csv(args.cases, dtype={"case_id": str})).to_markdown(index=False))
        return 0
    if not (args.experiment and args.processed):
        parser.error("--experiment and --processed are needed to score runs (or --cases to print a CSV)")
    import mlflow

    if args.tracking_uri:
        mlflow.set_tracking_uri(args.tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    torch.set_num_threads(args.threads)
    runs = analysis.load_runs(args.experiment, args.tracking_uri, args.tuned)
    if args.labeled:
        runs = runs[runs["labeled"].isin(args.labeled)]
    with tempfile.TemporaryDirectory(prefix="cvcl-teacher-") as tmp:
        models = {r: teacher_checkpoint(r, Path(tmp)) for r in runs["run_id"]}
        runs = runs[[models[r] is not None for r in runs["run_id"]]]
        if runs.empty:
            sys.exit("error: no finished run with a teacher in its checkpoint")
        student = analysis.load_per_case(runs, args.tracking_uri).assign(network="student")
        # the cases each run's evaluate stage scored, in its order
        cases_of = {r: list(group["case_id"]) for r, group in student.groupby("run_id", sort=False)}
        frames = [student]
        done: set[str] = set()
        if args.out and args.out.exists():  # a rerun scores only the runs the CSV lacks
            before = pd.read_csv(args.out, dtype={"case_id": str})
            before = before[(before["network"] == "teacher") & before["run_id"].isin(runs["run_id"])]
            done = set(before["run_id"])
            frames.append(before)
            print(f"{len(done)} runs' teachers kept from {args.out}")
        if args.check_student:
            first = runs.iloc[0]
            r = first["run_id"]
            again = score_network(r, models[r], cases_of[r], "student", args.processed, Path(tmp))
            logged = student[student["run_id"] == r]
            worst = float(np.max(np.abs(again["dice"].to_numpy() - logged["dice"].to_numpy())))
            print(f"check: {first['run_name']} student re-scored, largest per-case Dice difference {worst:.2e}")
            if worst > 1e-6:
                sys.exit("error: re-scoring the student does not give the logged figures")
        for _, run in runs[~runs["run_id"].isin(done)].iterrows():
            r = run["run_id"]
            scored = score_network(r, models[r], cases_of[r], "teacher", args.processed, Path(tmp))
            print(f"{run['run_name']}: teacher Dice {100 * scored['dice'].mean():.2f}", flush=True)
            frames.append(
                scored.assign(
                    run_id=run["run_id"],
                    config=run["config"],
                    labeled=run["labeled"],
                    seed=run["seed"],
                    case_id=scored["case_id"].astype(str),
                    network="teacher",
                )
            )
    cases = pd.concat(frames, ignore_index=True)[
        ["run_id", "config", "labeled", "seed", "network", "case_id", *analysis.METRICS]
    ]
    if args.out:
        with atomic_path(args.out) as tmp_out:
            cases.to_csv(tmp_out, index=False)
    print(format_differences(cases).to_markdown(index=False))
    return 0


def format_differences(cases: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and labeled count: student and teacher mean Dice, and teacher minus
    student (Dice in points) paired by seed and case."""
    rows = []
    for (config, labeled), group in cases.groupby(["config", "labeled"]):
        grid = group.pivot_table(index=["seed", "case_id"], columns="network", values="dice")
        if not set(NETWORKS) <= set(grid.columns):
            continue
        diff = (grid["teacher"] - grid["student"]).unstack("case_id") * 100
        paired = paired_difference(diff.to_numpy())
        rows.append(
            {
                "config": config,
                "labeled": labeled,
                "seeds": paired.n_seeds,
                "student dice": round(100 * float(grid["student"].mean()), 2),
                "teacher dice": round(100 * float(grid["teacher"].mean()), 2),
                "teacher - student": paired.verdict,
                "wilcoxon_p": float(f"{paired.wilcoxon_p:.3g}") if not math.isnan(paired.wilcoxon_p) else math.nan,
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    sys.exit(main())
