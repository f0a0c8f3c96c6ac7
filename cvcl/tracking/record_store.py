"""The MLflow side of run records (:mod:`cvcl.tracking.records`): importing records into the
project's store as runs, and exporting an experiment's finished runs as records."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from cvcl.tracking.records import (
    HASH_TAG,
    METRICS_PER_CALL,
    RecordError,
    RunRecord,
    read_record,
    record_files,
    write_record,
)


@dataclass(frozen=True)
class Imported:
    """What happened to one record: its run's id, and whether this import created it."""

    path: Path
    run_id: str
    created: bool


def _import_one(client: Any, experiment: str, experiment_id: str, path: Path, record: RunRecord) -> Imported:
    from mlflow.entities import Metric

    from cvcl.tracking.run import Run
    from cvcl.tracking.store import with_retries

    digest = record.sha256()
    found = with_retries(lambda: client.search_runs([experiment_id], f"tags.`{HASH_TAG}` = '{digest}'", max_results=50))
    done = [r for r in found if r.info.status != "RUNNING"]
    if done:
        return Imported(path, done[0].info.run_id, False)
    for r in found:  # an import killed midway leaves its run RUNNING: replace it whole
        with_retries(partial(client.delete_run, r.info.run_id))
    tags = {**record.tags, HASH_TAG: digest, "cvcl.imported_from": path.name}
    created = with_retries(
        lambda: client.create_run(experiment_id, start_time=record.start_ms, tags=tags, run_name=record.run_name)
    )
    run_id = created.info.run_id
    try:
        run = Run(client, run_id, experiment, record.run_name)
        run.log_params(record.params)  # values formatted as the train stage's start_run formats them
        if record.dataset is not None:
            run.log_dataset(
                record.dataset["name"], record.dataset.get("version"), record.dataset.get("source") or "unknown"
            )
        points = [
            Metric(key, value, record.step_ms.get(step, record.end_ms), step)
            for key, curve in record.curves.items()
            for step, value in curve
        ]
        points += [Metric(key, value, record.end_ms, 0) for key, value in record.metrics.items()]
        for i in range(0, len(points), METRICS_PER_CALL):
            chunk = points[i : i + METRICS_PER_CALL]
            with_retries(partial(client.log_batch, run_id, metrics=chunk))
        if record.artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                for rel, text in record.artifacts.items():
                    target = Path(tmp, *PurePosixPath(rel).parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
                with_retries(lambda: client.log_artifacts(run_id, tmp))
        with_retries(lambda: client.set_terminated(run_id, record.status, end_time=record.end_ms))
    except BaseException:
        # a half-imported run must not pass for an imported one: remove it, the next import redoes it
        with contextlib.suppress(Exception):
            client.delete_run(run_id)
        raise
    return Imported(path, run_id, True)


def import_records(
    paths: Iterable[str | Path], experiment: str | None = None, say: Callable[[str], None] = print
) -> list[Imported]:
    """Log each record named by ``paths`` (:func:`record_files`) into the project's MLflow store
    as one run of ``experiment`` (default: the record's own), skipping records already there.

    Every record is read and checked before the store is touched, so an invalid one
    (:class:`RecordError`) stops the import with nothing imported from it.
    """
    records = [(path, read_record(path)) for path in record_files(paths)]
    if experiment is not None and not experiment.strip():
        raise RecordError("--experiment", "an experiment name must not be empty")
    from cvcl.tracking.run import experiment_id, store_client

    client = store_client()
    ids: dict[str, str] = {}
    results = []
    for path, record in records:
        name = experiment or record.experiment
        if name not in ids:
            ids[name] = experiment_id(client, name)
        result = _import_one(client, name, ids[name], path, record)
        if result.created:
            say(
                f"{path}: imported as run {record.run_name} ({result.run_id}) of experiment {name}: "
                f"{record.status}, {len(record.params)} params, {record.n_points()} curve points, "
                f"{len(record.metrics)} metrics, {len(record.artifacts)} artifacts"
            )
        else:
            say(f"{path}: skipped (already imported), run {result.run_id} of experiment {name}")
        results.append(result)
    return results


# tags that are MLflow's own bookkeeping, or that an import sets again
_SKIPPED_TAGS = ("mlflow.runName", "mlflow.log-model.history", HASH_TAG, "cvcl.imported_from")
_TEXT_ARTIFACTS = ("per_case.csv", "metrics.json")  # the small text files a results table needs


def _record_of(client: Any, run: Any) -> RunRecord:
    """One finished MLflow run as a record: params, tags, each metric's whole history (a
    curve when it has more than one point or a point past step 0, else a final metric), the
    text artifacts of :data:`_TEXT_ARTIFACTS` found at the run's root, and its dataset input."""
    from cvcl.tracking.store import with_retries

    run_id = run.info.run_id
    curves: dict[str, list[tuple[int, float]]] = {}
    metrics: dict[str, float] = {}
    step_ms: dict[int, int] = {}
    for key in sorted(run.data.metrics):
        history = sorted(with_retries(partial(client.get_metric_history, run_id, key)), key=lambda m: m.step)
        if len(history) > 1 or any(m.step != 0 for m in history):
            curves[key] = [(int(m.step), float(m.value)) for m in history]
            for m in history:
                step_ms.setdefault(int(m.step), int(m.timestamp))
        elif history:
            metrics[key] = float(history[-1].value)
    artifacts = {}
    listed = {a.path for a in with_retries(lambda: client.list_artifacts(run_id))}
    with tempfile.TemporaryDirectory() as tmp:
        for name in _TEXT_ARTIFACTS:
            if name in listed:
                local = with_retries(partial(client.download_artifacts, run_id, name, tmp))
                artifacts[name] = Path(local).read_text()
    dataset = None
    inputs = getattr(run, "inputs", None)
    if inputs is not None and inputs.dataset_inputs:
        found = inputs.dataset_inputs[0].dataset
        dataset = {"name": found.name, "version": found.digest, "source": found.source}
    tags = {k: v for k, v in run.data.tags.items() if k not in _SKIPPED_TAGS}
    return RunRecord(
        run.data.tags.get("mlflow.runName") or run_id,
        "",
        run.info.status,
        int(run.info.start_time),
        int(run.info.end_time or run.info.start_time),
        dict(run.data.params),
        tags,
        metrics,
        curves,
        step_ms,
        artifacts,
        dataset,
    )


def export_records(
    experiment: str, out: str | Path, filter_string: str = "", say: Callable[[str], None] = print
) -> list[Path]:
    """Write each FINISHED run of ``experiment`` (and ``filter_string``, an MLflow search filter)
    as a record ``<out>/<run name>-<run id[:8]>.json`` that :func:`import_records` logs back,
    params, curves, metrics and per-case scores intact. Files already there are rewritten."""
    from cvcl.tracking.paging import all_runs
    from cvcl.tracking.run import store_client
    from cvcl.tracking.store import with_retries

    client = store_client()
    found = with_retries(lambda: client.get_experiment_by_name(experiment))
    if found is None:
        raise RecordError("--experiment", f"no experiment {experiment!r} in the store")
    query = " and ".join(f for f in ("attributes.status = 'FINISHED'", filter_string) if f)
    runs = all_runs(client, [found.experiment_id], query, order_by=["attributes.start_time ASC"])
    written = []
    for run in runs:
        record = _record_of(client, run)
        record = RunRecord(**{**record.__dict__, "experiment": experiment})
        path = Path(out) / f"{record.run_name}-{run.info.run_id[:8]}.json"
        write_record(path, record)
        say(
            f"{path}: {record.run_name}, {len(record.params)} params, {record.n_points()} curve points, "
            f"{len(record.metrics)} metrics, {len(record.artifacts)} artifacts"
        )
        written.append(path)
    return written
