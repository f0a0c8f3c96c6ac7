"""The GPU check: the paper preset on full-resolution LA, three methods side by side, plus the
trainer's step timed at the paper size. One prepared script for a short GPU lease.

    python benchmarks/gpu_check.py --data <LA release folder> --minutes 5.5 --out <folder>
    python benchmarks/gpu_check.py --data ../shared/datasets/la-sample --tiny --out /tmp/gpu   # CPU smoke

``--data`` is a folder in the public release's layout (``train.list``, ``test.list``,
``2018LA_Seg_Training Set/<case>/mri_norm2.h5``); a subset of it is enough. The script:

1. times ``benchmarks/train_step.py`` at the paper size (f 16, 112x112x80, batch 2+2, batch
   norm) with the trainer's own step, AMP and channels_last on, then with AMP off;
2. trains supervised, mean_teacher and cvcl with ``presets/paper-la.yaml`` side by side on
   the one GPU (one process each), the first ``--labeled`` cases of train.list labeled and the
   next ``--unlabeled`` unlabeled, for ``--iterations`` or until ``--minutes`` run out (the lr
   and ramp schedules are those of ``--iterations``; the iteration reached is reported);
3. predicts the first ``--test`` cases of test.list with the preset's sliding window (student
   and teacher) and scores them with the project's medpy-equal metrics (voxel units).

It trains through the train stage's own setup and trainer (:func:`cvcl.training.experiment.training_setup`,
:func:`cvcl.training.trainer.train`, the ``--minutes`` deadline as the trainer's stop condition)
and predicts and scores through the one predict-then-score loop
(:func:`cvcl.evaluation.scoring.predict_and_score`), without DVC or MLflow (the GPU machine has
neither); ``cvcl`` must be importable (``pip install -e .``, or ``PYTHONPATH=.`` from the
repository root). It prints every result as it comes, ending with one JSON line; ``--out`` gets
``gpu_check.json`` and, per variant, a run record ``runs/<variant>.json``
(:mod:`cvcl.tracking.records`: params, every step's curves, final metrics, ``per_case.csv``)
that ``make import-runs RECORDS=<out>`` logs into MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import yaml

from cvcl import methods
from cvcl.commands.presets import load_preset
from cvcl.datasets.la.convert import read_release_case
from cvcl.device import memory_format
from cvcl.evaluation.report import PER_CASE_FIELDS
from cvcl.evaluation.scoring import ScoringCase, score_rows
from cvcl.evaluation.summary import summarize
from cvcl.inference.config import InferConfig
from cvcl.inference.predictor import Predictor
from cvcl.io.volume import read_case, write_case
from cvcl.params import Params
from cvcl.sources.layouts import find_la_h5_cases
from cvcl.tracking.naming import run_name
from cvcl.tracking.records import REACHED_TAG, RunRecorder, run_tags
from cvcl.training.config import TRACKED, training_settings
from cvcl.training.experiment import training_setup
from cvcl.training.trainer import train
from cvcl.workspace import case_file, read_list

ROOT = Path(__file__).resolve().parents[1]

# the default side-by-side comparison; --variants takes any method of cvcl.methods
DEFAULT_VARIANTS = ("supervised", "mean_teacher", "cvcl")


def parse_variant(spec: str) -> tuple[str, dict]:
    """``cvcl:loss.vcl_weight=0.6,loss.pcl_weight=1`` -> ("cvcl", {dotted name: value})."""
    method, _, rest = spec.partition(":")
    if method not in methods.names():
        raise SystemExit(f"error: --variants: {spec!r}: the method must be one of {', '.join(methods.names())}")
    pairs = [p.split("=", 1) for p in rest.split(",") if p]
    return method, {k: yaml.safe_load(v) for k, v in pairs}


def record_path(out: Path, spec: str) -> Path:
    """Where a variant's run record goes: ``<out>/runs/cvcl-loss.vcl_weight-0.6.json`` for
    ``cvcl:loss.vcl_weight=0.6`` (a file name the shell and make take unquoted)."""
    return out / "runs" / (re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-") + ".json")


def say(*args) -> None:
    print(*args, flush=True)


def preset_params(overrides: dict) -> Params:
    """params.yaml with the paper preset and ``overrides`` (dotted names) applied."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, value in {**load_preset("paper-la"), **overrides}.items():
        node = data
        *parents, leaf = name.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return Params(data, source="presets/paper-la.yaml")


def prepare(data: Path, out: Path, n_labeled: int, n_unlabeled: int, n_test: int) -> dict[str, list[str]]:
    """Convert the chosen release cases to the processed convention in ``out``."""
    files = find_la_h5_cases(data)
    train_ids = [c for c in read_list(data / "train.list") if c in files]
    test_ids = [c for c in read_list(data / "test.list") if c in files][:n_test]
    # no validation cases: the trainings run to their iterations or the deadline, unscored until the end
    split = {
        "labeled": train_ids[:n_labeled],
        "unlabeled": train_ids[n_labeled : n_labeled + n_unlabeled],
        "val": [],
        "test": test_ids,
    }
    for case_id in [c for ids in split.values() for c in ids]:
        write_case(case_file(case_id, out), read_release_case(files[case_id], case_id, "la"))
    return split


def start_record(
    args, params: Params, method: str, split: dict, losses, infer: InferConfig, device: torch.device
) -> RunRecorder:
    """The variant's run record, with the params and tags the pipeline's stages would log: the
    train stage's tracked params (method, labeled count and seed as this script trains them) and
    the inference and evaluation settings the scores below use."""
    labeled, seed = len(split["labeled"]), 1
    logged = {
        **params.flat(TRACKED),
        "method": method,
        "labeled": labeled,
        "seed": seed,
        **{f"infer.{k}": v for k, v in infer.window_settings().items() if k not in ("patch", "weights")},
        "evaluate.distance_unit": "voxel",
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    tags = {
        **run_tags("benchmarks/gpu_check.py", name, "gpu_check", ROOT),
        "dataset": params.get("dataset"),
        "method": method,
        "cvcl.variant": args.child,
    }
    return RunRecorder(
        run_name(method, labeled, seed, losses.as_params()),
        logged,
        tags,
        dataset={"name": params.get("dataset"), "source": str(args.data), "version": None},
    )


class Deadline:
    """The trainer's stop condition for the ``--minutes`` budget: true once the clock passes
    ``at`` (seconds since the epoch, shared by the side-by-side trainings). It is asked after
    every iteration, so it also knows how far training got, a failed one included."""

    def __init__(self, at: float) -> None:
        self.at, self.reached, self.passed = at, 0, False

    def __call__(self, reached: int) -> bool:
        self.reached, self.passed = reached, time.time() > self.at
        return self.passed


def run_child(args) -> None:
    """Train one variant with the train stage's trainer until its iterations or the deadline,
    then predict and score the test cases with the student and the teacher."""
    deadline = Deadline(float(args.deadline))
    split = json.loads(Path(args.split).read_text())
    method, extra = parse_variant(args.child)
    params = preset_params({**json.loads(args.overrides), **extra, "method": method})
    setup = training_setup(training_settings(params), split, Path(args.processed))
    cfg, device = setup.cfg, setup.device
    # the scoring runs as training did: its AMP and memory format (amp_dtype is None on a CPU)
    infer = InferConfig(
        patch=cfg.patch,
        stride=tuple(params.get("infer.stride")),
        batch_size=params.get("infer.batch_size"),
        amp=cfg.amp,
    )
    recorder = start_record(args, params, method, split, setup.losses, infer, device)
    skipped, start = 0, time.perf_counter()

    def on_step(step: int, record: dict[str, float]) -> None:
        nonlocal skipped
        skipped += not np.isfinite(record["grad_norm"])  # a float16 step the loss scaler skipped
        recorder.log_step(step, record)  # every step, as the train stage logs them
        done = step + 1
        if done % 500 == 0 or done == cfg.iterations or (deadline.passed and done == deadline.reached):
            terms = " ".join(f"{k}={v:.4f}" for k, v in record.items() if k.startswith("loss"))
            say(f"[{args.child}] it {done} {(time.perf_counter() - start) / done:.3f} s/it {terms}")

    try:
        trained = train(
            setup.dataset,
            setup.model_cfg,
            cfg,
            setup.objective,
            device,
            seed=1,
            on_step=on_step,
            progress=False,
            stop=deadline,
        )
    except BaseException as exc:
        # a diverged or crashed training still lands in MLflow: FAILED, with its curves so far
        recorder.set_tags(
            {
                REACHED_TAG: f"{deadline.reached} of {cfg.iterations}, stopped by {type(exc).__name__}",
                "cvcl.end_reason": f"{type(exc).__name__}: {exc}"[:500],
            }
        )
        recorder.write(args.record, "FAILED")
        raise
    train_s, reached = time.perf_counter() - start, trained.reached
    result = {
        "method": args.child,
        "iterations_planned": cfg.iterations,
        "iterations_reached": reached,
        "seconds_per_iteration": round(train_s / max(reached, 1), 4),
        "amp_skipped_steps": skipped,
    }
    recorder.log_metrics(
        {"train_seconds": train_s, "seconds_per_iteration": train_s / max(reached, 1), "amp_skipped_steps": skipped}
    )

    def test_cases() -> Iterator[ScoringCase]:  # read one at a time, as the loop reaches each
        for case_id in split["test"]:
            yield ScoringCase.on_grid(read_case(case_file(case_id, args.processed)), "network")

    nets = {"student": trained.student, "teacher": trained.teacher}
    for which, net in nets.items():
        if net is None:
            continue
        predictor = Predictor(net.eval(), infer, device, memory_format(device, cfg.channels_last))
        # the evaluate stage's rows, on the network grid with voxel distances
        full = score_rows(predictor, test_cases(), "voxel")
        rows = [
            {
                "case": r["case_id"],
                "dice": r["dice"],
                "hd95": r["hd95"],
                "asd": r["asd"],
                "fg_fraction": r["pred_fraction"],
            }
            for r in full
        ]
        dice = [r["dice"] for r in rows]
        result[which] = {
            "dice_mean": float(np.mean(dice)),
            "dice_std": float(np.std(dice)),
            "hd95_mean": float(np.nanmean([r["hd95"] for r in rows])),
            "asd_mean": float(np.nanmean([r["asd"] for r in rows])),
            "cases": rows,
        }
        # the evaluate stage's metric names; the teacher's prefixed (the stage scores one network)
        prefix = "" if which == "student" else f"{which}_"
        recorder.log_metrics(summarize(full, "voxel"), prefix)
        recorder.add_csv("per_case.csv" if which == "student" else f"{which}/per_case.csv", PER_CASE_FIELDS, full)
        say(
            f"[{args.child}] {which}: Dice {100 * np.mean(dice):.2f} +- {100 * np.std(dice):.2f} "
            f"(per case {' '.join(f'{100 * d:.1f}' for d in dice)})"
        )
    cut_short = reached < cfg.iterations  # only the deadline ends training early
    recorder.set_tags(
        {REACHED_TAG: f"{reached} of {cfg.iterations}" + (", cut short by the --minutes deadline" if cut_short else "")}
    )
    recorder.write(args.record, "KILLED" if cut_short else "FINISHED")
    Path(args.result).write_text(json.dumps(result))


def bench(args, extra: list[str]) -> dict | None:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "train_step.py"),
        "--patch",
        *map(str, args.patch),
        "--filters",
        str(args.filters),
        "--norm",
        "batch",
        "--repeats",
        str(args.repeats),
        *extra,
    ]
    # train_step.py finds cvcl as this script does: installed (pip install -e .) or on PYTHONPATH
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    say(proc.stdout.strip() or proc.stderr.strip()[-2000:])
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if proc.returncode == 0 and lines else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a folder in the LA release's layout")
    ap.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    ap.add_argument("--minutes", type=float, default=5.5, help="training time budget (all three side by side)")
    ap.add_argument("--iterations", type=int, default=6000)
    ap.add_argument("--labeled", type=int, default=8)
    ap.add_argument("--unlabeled", type=int, default=8)
    ap.add_argument("--test", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke sizes (patch 32x32x16, f 2, 4 iterations)")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_VARIANTS),
        help="what to train side by side: METHOD[:param=value,...], e.g. cvcl:loss.vcl_weight=0.6",
    )
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers per training")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    for hidden in ("processed", "split", "overrides", "deadline", "result", "record"):
        ap.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return run_child(args)

    args.patch, args.filters = ([32, 32, 16], 2) if args.tiny else ([112, 112, 80], 16)
    for spec in args.variants:
        parse_variant(spec)
    overrides = {"train.iterations": args.iterations, "train.workers": args.workers}
    if args.tiny:
        overrides.update(
            {
                "train.patch": args.patch,
                "model.base_filters": 2,
                "infer.stride": args.patch,
                "loss.n_anchor": 8,
                "train.iterations": 4,
                "train.workers": 0,
            }
        )
        args.repeats, args.test = 1, 1
    say(f"torch {torch.__version__}, device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")
    report: dict = {"overrides": overrides}
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.skip_bench:
        report["train_step_amp"] = bench(args, [])
        report["train_step_fp32"] = bench(args, ["--no-amp"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        split = prepare(args.data, tmp / "processed", args.labeled, args.unlabeled, args.test)
        (tmp / "split.json").write_text(json.dumps(split))
        say(f"cases: {len(split['labeled'])} labeled, {len(split['unlabeled'])} unlabeled, {len(split['test'])} test")
        deadline = time.time() + 60 * args.minutes
        children = {}
        for i, spec in enumerate(args.variants):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                spec,
                "--processed",
                str(tmp / "processed"),
                "--split",
                str(tmp / "split.json"),
                "--overrides",
                json.dumps(overrides),
                "--deadline",
                str(deadline),
                "--result",
                str(tmp / f"{i}.json"),
                "--data",
                str(args.data),
                "--record",
                str(record_path(args.out, spec)),
            ]
            children[spec] = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for i, (spec, proc) in enumerate(children.items()):
            proc.wait()
            path = tmp / f"{i}.json"
            report[spec] = json.loads(path.read_text()) if path.is_file() else {"error": f"exit {proc.returncode}"}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    for spec in args.variants:
        r = report[spec]
        if "student" in r:
            say(
                f"{spec:<34} {r['iterations_reached']:>5} it  {r['seconds_per_iteration']:.3f} s/it  "
                f"Dice {100 * r['student']['dice_mean']:.2f}  HD95 {r['student']['hd95_mean']:.2f}  "
                f"skipped {r['amp_skipped_steps']}"
            )
    say(
        json.dumps(
            {k: v for k, v in report.items() if k not in args.variants}
            | {
                m: {k: v for k, v in report[m].items() if k not in ("student", "teacher")}
                | {
                    w: {k: v for k, v in report[m].get(w, {}).items() if k != "cases"}
                    for w in ("student", "teacher")
                    if w in report[m]
                }
                for m in args.variants
            }
        )
    )


if __name__ == "__main__":
    main()
