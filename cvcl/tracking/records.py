"""Run records: a training run as one JSON file, written where MLflow is not installed and
logged into the project's MLflow store afterwards with one command.

The GPU machine (``benchmarks/gpu_check.py``) has torch but neither MLflow nor DVC, so a
training there writes a record with the standard library only (:class:`RunRecorder`), and

    cvcl records import <folder or record files> [--experiment NAME]

(``make import-runs RECORDS=<folder>``, :mod:`cvcl.tracking.record_store`) logs each record as
one run of the store that :func:`cvcl.tracking.store.tracking_uri` names: the run name, params,
tags, every point of every curve with its step, the final metrics, the artifacts
(``per_case.csv``), the original start and end times and the final status, as if the run had
been logged where it trained. Importing a record again does nothing: each run carries the
record's content hash (:data:`HASH_TAG`).

The other way, ``cvcl records export --experiment cvcl-la --out results/``
writes an experiment's finished runs as records: a results table's runs travel with the
repository and a fresh clone imports them back for the notebook.

This module needs no MLflow (the GPU side); :mod:`cvcl.tracking.record_store` is the MLflow side.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from cvcl.errors import DataError
from cvcl.io.atomic import write_text

SCHEMA = "cvcl.run_record/1"
DEFAULT_EXPERIMENT = "cvcl-la-gpu"
RECORD_TAG = "cvcl.record"  # what wrote the record: "gpu_check"
HASH_TAG = "cvcl.record_sha256"  # the content hash an imported run carries (idempotent import)
REACHED_TAG = "cvcl.iterations_reached"  # "<reached> of <planned>", and why a run stopped early
STATUSES = ("FINISHED", "KILLED", "FAILED")  # the terminal statuses MLflow knows
METRICS_PER_CALL = 1000  # MLflow's limit on the metrics of one log_batch call
_KEY = re.compile(r"^[/\w.\- :]+$")  # the characters MLflow accepts in param, metric and tag keys


class RecordError(DataError):
    """A run record that cannot be read or is not valid: one line naming the file."""


def now_ms() -> int:
    """The wall-clock time in milliseconds since the epoch (MLflow's unit)."""
    return int(time.time() * 1000)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunRecord:
    """One training run, as MLflow would hold it.

    ``params``: dotted names -> JSON values (logged as the train stage logs them);
    ``curves``: metric name -> ``[(step, value), ...]`` in step order; ``step_ms``: step -> the
    time (ms since the epoch) its values were read back, the points' timestamps; ``metrics``:
    the final figures (logged at step 0, as the evaluate stage does); ``artifacts``: relative
    path -> text; ``start_ms``/``end_ms``: ms since the epoch; ``status``: one of
    :data:`STATUSES`; ``dataset``: ``{"name", "source", "version"}`` for the UI's Dataset column.
    """

    run_name: str
    experiment: str
    status: str
    start_ms: int
    end_ms: int
    params: dict[str, Any]
    tags: dict[str, str]
    metrics: dict[str, float]
    curves: dict[str, list[tuple[int, float]]]
    step_ms: dict[int, int] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values (the file's content)."""
        return {
            "schema": SCHEMA,
            "run_name": self.run_name,
            "experiment": self.experiment,
            "status": self.status,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "dataset": self.dataset,
            "params": self.params,
            "tags": self.tags,
            "metrics": self.metrics,
            "curves": {k: [[s, v] for s, v in points] for k, points in self.curves.items()},
            "step_ms": [[s, t] for s, t in sorted(self.step_ms.items())],
            "artifacts": self.artifacts,
        }

    def sha256(self) -> str:
        """The hash of the content (canonical JSON), whatever the file's layout or name."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def n_points(self) -> int:
        """How many metric points the curves hold."""
        return sum(len(points) for points in self.curves.values())


def _dumps(data: Mapping[str, Any]) -> str:
    """JSON with one line per field and per entry of the mapping fields (a curve, a param):
    greppable, and 2 MB for 6000 steps of 11 curves, half the size of an indented dump."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_record(path: str | Path, record: RunRecord) -> Path:
    """Write ``record`` to ``path`` atomically (a reader never sees half a record)."""
    write_text(path, _dumps(record.to_json()))
    return Path(path)


def _parse(data: Any, where: Path) -> RunRecord:
    """A :class:`RunRecord` from the file's JSON, every field checked (types, MLflow's key rule)."""

    def need(ok: Any, problem: str) -> None:
        if not ok:
            raise RecordError(where, f"not a valid run record: {problem}")

    need(isinstance(data, dict), "the top level is not a JSON object")
    need(data.get("schema") == SCHEMA, f"schema {data.get('schema')!r}, expected {SCHEMA!r}")
    for name in ("run_name", "experiment"):
        need(isinstance(data.get(name), str) and data[name].strip(), f"{name} is missing or empty")
    need(data.get("status") in STATUSES, f"status {data.get('status')!r} is not one of {', '.join(STATUSES)}")
    start, end = data.get("start_ms"), data.get("end_ms")
    need(
        isinstance(start, int) and isinstance(end, int) and 0 <= start <= end,
        f"start_ms {start!r} and end_ms {end!r} are not times in ms with start <= end",
    )
    sections = {}
    for name in ("params", "tags", "metrics", "curves", "artifacts"):
        value = data.get(name)
        need(isinstance(value, dict), f"{name} is not a JSON object")
        bad = [k for k in value if not _KEY.match(k)] if name != "artifacts" else []
        need(not bad, f"{name}: {bad[:1]} is not a valid MLflow key (letters, digits, _ - . / : and space)")
        sections[name] = value
    need(all(isinstance(v, str) for v in sections["tags"].values()), "tags: a value is not a string")
    need(all(_is_number(v) for v in sections["metrics"].values()), "metrics: a value is not a number")
    curves = {}
    for key, points in sections["curves"].items():
        need(
            isinstance(points, list)
            and all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and p[0] >= 0 and _is_number(p[1])
                for p in points
            ),
            f"curves: {key!r} is not a list of [step, value] pairs",
        )
        curves[key] = [(s, float(v)) for s, v in points]
    step_ms = data.get("step_ms", [])
    need(
        isinstance(step_ms, list)
        and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) for x in p) for p in step_ms),
        "step_ms is not a list of [step, ms] pairs",
    )
    for rel, text in sections["artifacts"].items():
        parts = PurePosixPath(rel).parts
        need(
            parts and not PurePosixPath(rel).is_absolute() and ".." not in parts and isinstance(text, str),
            f"artifacts: {rel!r} is not a relative path with text",
        )
    dataset = data.get("dataset")
    need(
        dataset is None or (isinstance(dataset, dict) and isinstance(dataset.get("name"), str)),
        "dataset is neither null nor an object with a name",
    )
    return RunRecord(
        data["run_name"],
        data["experiment"],
        data["status"],
        start,
        end,
        sections["params"],
        sections["tags"],
        {k: float(v) for k, v in sections["metrics"].items()},
        curves,
        {s: t for s, t in step_ms},
        sections["artifacts"],
        dataset,
    )


def read_record(path: str | Path) -> RunRecord:
    """Read and check the record at ``path``; :class:`RecordError` names the file and the fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(path, f"cannot be read ({exc.__class__.__name__}: {exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            path,
            f"not a valid run record: not JSON ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}; truncated or corrupt?)",
        ) from None
    return _parse(data, path)


def csv_text(fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """``rows`` as CSV text with the header ``fields`` (other keys ignored), as the stages write."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def run_tags(source: str, device: str, kind: str, root: str | Path | None = None) -> dict[str, str]:
    """The tags of a recorded run: MLflow's source tags for ``source`` (the script, relative to
    the repository root ``root``), the commit when git knows one, ``cvcl.device``, the date
    (UTC, ``cvcl.date``) and what wrote the record (:data:`RECORD_TAG` = ``kind``)."""
    tags = {
        "mlflow.source.name": source,
        "mlflow.source.type": "LOCAL",
        "cvcl.device": device,
        "cvcl.date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        RECORD_TAG: kind,
    }
    try:  # a copy of the working tree without .git (a rented GPU machine) has no commit to name
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        tags["git_commit"] = tags["mlflow.source.git.commit"] = head.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return tags


class RunRecorder:
    """Collects one training run in memory and writes it as a :class:`RunRecord`.

    The start time is taken when the recorder is made; :meth:`write` takes the end time.
    """

    def __init__(
        self,
        run_name: str,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        experiment: str = DEFAULT_EXPERIMENT,
        dataset: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_name, self.experiment = run_name, experiment
        self.params, self.tags = dict(params), {k: str(v) for k, v in tags.items()}
        self.dataset = dict(dataset) if dataset is not None else None
        self.start_ms = now_ms()
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.step_ms: dict[int, int] = {}
        self.metrics: dict[str, float] = {}
        self.artifacts: dict[str, str] = {}

    def log_step(self, step: int, values: Mapping[str, float]) -> None:
        """One training step's values (loss terms, lr, consistency_weight, grad_norm, ...),
        under the names the train stage logs; the time of the call is the points' timestamp."""
        self.step_ms[step] = now_ms()
        for key, value in values.items():
            self.curves.setdefault(key, []).append((step, float(value)))

    def log_metrics(self, values: Mapping[str, Any], prefix: str = "") -> None:
        """Final metrics, ``prefix`` + name. As the evaluate stage does, only numbers that are not
        NaN are kept (a summary's ``distance_unit`` string is left out, a bool becomes 0 or 1)."""
        for key, value in values.items():
            if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
                self.metrics[prefix + key] = float(value)

    def add_csv(self, name: str, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
        """An artifact ``name`` (a relative path, e.g. ``per_case.csv``) holding ``rows`` as CSV."""
        self.artifacts[name] = csv_text(fields, rows)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({k: str(v) for k, v in tags.items()})

    def record(self, status: str) -> RunRecord:
        """The run as it stands, ending now with ``status`` (one of :data:`STATUSES`)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        return RunRecord(
            self.run_name,
            self.experiment,
            status,
            self.start_ms,
            max(now_ms(), self.start_ms),
            dict(self.params),
            dict(self.tags),
            dict(self.metrics),
            {k: list(v) for k, v in self.curves.items()},
            dict(self.step_ms),
            dict(self.artifacts),
            self.dataset,
        )

    def write(self, path: str | Path, status: str = "FINISHED") -> Path:
        """Write the run, ending now with ``status``, to ``path`` (atomically)."""
        return write_record(path, self.record(status))


def record_files(paths: Iterable[str | Path]) -> list[Path]:
    """The record files named by ``paths``: files as given; for a folder its ``*.json``, or those
    of its ``runs/`` when it has one (``benchmarks/gpu_check.py``'s ``--out`` folder)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            folder = path / "runs" if (path / "runs").is_dir() else path
            files = sorted(folder.glob("*.json"))
            if not files:
                raise RecordError(path, "no run records (*.json) in this folder")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise RecordError(path, "not found")
    return list(dict.fromkeys(found))  # each file once, in order
