"""One MLflow run per pipeline execution, carried from train to infer to evaluate.

``train`` starts the run and records its id in ``models/mlflow_run.json``; ``infer`` and
``evaluate`` reopen it through that file (infer writes its own ``models/mlflow_run_infer.json``
for evaluate). A stage that reopens a run whose params disagree with its own (the same
trained model, re-inferred or re-evaluated with other settings: a post-processing ablation,
say) *forks* it: a new run with the same params, tags, curves and artifacts and the new
settings, so no run's record is ever overwritten and every configuration is one row.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from cvcl.errors import DataError
from cvcl.io.atomic import write_json
from cvcl.tracking.store import (
    TrackingServerError,
    check_server,
    prepare_sqlite,
    quiet_mlflow_logs,
    sqlite_path,
    store_lock,
    tracking_uri,
    with_retries,
)
from cvcl.tracking.ui import experiment_defaults, missing_defaults, source_tags
from cvcl.tracking.values import clean_metric, clean_param, clean_tag, public_uri
from cvcl.workspace import PROCESSED

BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call
# Buffered metrics are written at least this often, so a run killed without warning
# (SIGKILL, the out-of-memory killer) keeps its curve up to the last FLUSH_SECONDS.
FLUSH_SECONDS = 30.0


def store_client():
    """An MLflow client on the project's store (:func:`tracking_uri`), its schema created once;
    a one-line error when a server is down or refuses the login."""
    quiet_mlflow_logs()
    from mlflow import MlflowClient

    uri = tracking_uri()
    check_server(uri)  # a one-line error now, rather than retries and a traceback mid-stage
    with store_lock(uri):
        prepare_sqlite(uri)
        client = MlflowClient(tracking_uri=uri)
        with_retries(lambda: client.search_experiments(max_results=1))  # creates the schema once
    return client


def experiment_name(dataset: str) -> str:
    """Where a dataset's runs go: ``$CVCL_EXPERIMENT`` when set (tuning runs kept apart from the
    runs of a results table, say), else ``cvcl-<dataset>``."""
    return os.environ.get("CVCL_EXPERIMENT") or f"cvcl-{dataset}"


def experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created if new, with the tags that make the MLflow UI
    show it as model training (:mod:`cvcl.tracking.ui`)."""
    from mlflow.exceptions import MlflowException

    found = with_retries(lambda: client.get_experiment_by_name(name))
    if found is None:
        db = sqlite_path(tracking_uri())
        # With a local store, artifacts go next to it (not into a queued experiment's temporary
        # workspace, which DVC deletes afterwards): <project>/mlruns for the project's mlflow.db.
        location = (db.resolve().parent / "mlruns" / name).as_uri() if db is not None else None
        tags = experiment_defaults(int(time.time() * 1000))
        try:
            return with_retries(lambda: client.create_experiment(name, artifact_location=location, tags=tags))
        except MlflowException:  # another worker created it first
            found = with_retries(lambda: client.get_experiment_by_name(name))
    _add_missing_defaults(client, found)
    return found.experiment_id


def _add_missing_defaults(client, experiment) -> None:
    """Give an experiment made before the UI defaults existed the ones it lacks. A user who may
    log runs but not edit the experiment (a read-mostly server permission) keeps it as it is:
    the defaults are a convenience, no reason to stop a stage."""
    from mlflow.exceptions import MlflowException

    for key, value in missing_defaults(experiment.tags, int(time.time() * 1000)).items():
        try:
            with_retries(partial(client.set_experiment_tag, experiment.experiment_id, key, value))
        except MlflowException as exc:
            print(f"note: could not set the tag {key} of experiment {experiment.name}: {str(exc)[:200]}")
            return


def _param_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _note(note: str | None, said: set[str] | None = None, once: str | None = None) -> None:
    """Print ``note`` (from :mod:`cvcl.tracking.values`) as one line; with ``said``, only the
    first time for ``once``."""
    if note is None or (said is not None and (once or note) in said):
        return
    if said is not None:
        said.add(once or note)
    print(f"note: {note}", flush=True)


def _clean_tags(tags: dict[str, Any], said: set[str] | None = None) -> dict[str, str]:
    out = {}
    for k, v in tags.items():
        out[k], note = clean_tag(k, str(v))
        _note(note, said)
    return out


def context_tags() -> dict[str, str]:
    """Tags linking a run to the code and to its DVC experiment."""
    tags = {}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        tags["git_commit"] = head.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        tags["git_commit"] = os.environ.get("DVC_EXP_BASELINE_REV", "none")  # no commit yet
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("CVCL_RAY_NODE"):  # set by a Ray sweep's task (cvcl/commands/sweep_ray.py): node id, host:pid
        tags["cvcl.node"] = os.environ["CVCL_RAY_NODE"]
    return tags


class ParamConflict(Exception):
    """A stage's params differ from those already logged on the run."""


class Run:
    """A handle on one MLflow run with buffered, retried logging."""

    def __init__(self, client, run_id: str, experiment: str = "", name: str = "") -> None:
        self.client, self.run_id, self.experiment, self.name = client, run_id, experiment, name
        self._pending: list = []
        self._flushed_at = time.monotonic()
        self._said: set[str] = set()  # the notes on cleaned values already printed

    # -- params and tags ---------------------------------------------------------------
    def logged_params(self) -> dict[str, str]:
        return dict(with_retries(lambda: self.client.get_run(self.run_id)).data.params)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params; raises :class:`ParamConflict` if one was logged with another value."""
        from mlflow.entities import Param

        logged = self.logged_params()
        values = {}
        for k, v in params.items():
            values[k], note = clean_param(k, _param_value(v))
            _note(note, self._said)
        conflicts = {k for k, v in values.items() if k in logged and logged[k] != v}
        if conflicts:
            raise ParamConflict(", ".join(sorted(conflicts)))
        new = [Param(k, v) for k, v in values.items() if k not in logged]
        for i in range(0, len(new), 100):
            with_retries(partial(self.client.log_batch, self.run_id, params=new[i : i + 100]))

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in _clean_tags(tags, self._said).items()]
        if items:
            with_retries(lambda: self.client.log_batch(self.run_id, tags=items))

    def log_dataset(
        self, name: str, version: str | None, source: str | Path = PROCESSED, context: str = "training"
    ) -> None:
        """Log the data the run used as an MLflow dataset input: the UI's Dataset column then
        shows ``name (version)``. ``version`` is the data's content hash (DVC's, from
        :func:`cvcl.tracking.naming.data_version`); MLflow keeps 36 characters of it, the length
        of DVC's ``<md5>.dir``."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = Dataset(
            name=name,
            digest=(version or "unversioned")[:36],
            source_type="local",
            source=json.dumps({"uri": Path(source).as_posix()}),
        )
        item = DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
        with_retries(lambda: self.client.log_inputs(self.run_id, datasets=[item]))

    # -- metrics -----------------------------------------------------------------------
    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Queue metrics; they are written in batches of :data:`BATCH` and at least every
        :data:`FLUSH_SECONDS` (see :meth:`flush`)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for k, v in values.items():
            value, note = clean_metric(k, v, step)  # a note once per metric and kind: not every step
            _note(note, self._said, once=f"metric {k} {'NaN' if value is not None else 'left out'}")
            if value is not None:
                self._pending.append(Metric(k, value, now, step))
        if len(self._pending) >= BATCH or time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._flushed_at = time.monotonic()
        while self._pending:
            chunk = self._pending[:BATCH]
            with_retries(partial(self.client.log_batch, self.run_id, metrics=chunk))
            del self._pending[: len(chunk)]  # only once stored: a server that stays away loses nothing here

    # -- artifacts and status ----------------------------------------------------------
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with_retries(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def set_status(self, status: str) -> None:
        if status == "RUNNING":
            with_retries(lambda: self.client.update_run(self.run_id, status="RUNNING"))
            # who holds the run now: lets a later stage tell a killed holder from a live one
            self.set_tags({"cvcl.host": socket.gethostname(), "cvcl.pid": str(os.getpid())})
        else:
            with_retries(lambda: self.client.set_terminated(self.run_id, status))

    def to_file(self, path: str | Path) -> None:
        """Record the run for the next stage (its id, and what recreates it elsewhere)."""
        write_json(
            path,
            {
                "run_id": self.run_id,
                "experiment": self.experiment,
                "run_name": self.name,
                "tracking_uri": public_uri(tracking_uri()),
            },
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def close_abandoned_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of the experiment whose holder (a stage on this machine) is
    gone: SIGKILL and the out-of-memory killer leave no chance to close a run. A tag says why.
    Runs held on other machines are left alone (their processes cannot be checked from here)."""
    from mlflow.entities import RunStatus

    host = socket.gethostname()
    closed = []
    runs = with_retries(lambda: client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=200))
    for r in runs:
        tags = r.data.tags
        if tags.get("cvcl.host") != host or not tags.get("cvcl.pid", "").isdigit():
            continue
        pid = int(tags["cvcl.pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        why = f"process {pid} on {host} ended without closing the run (killed); closed by process {os.getpid()}"
        with_retries(partial(client.set_tag, r.info.run_id, "cvcl.end_reason", why))
        with_retries(partial(client.set_terminated, r.info.run_id, RunStatus.to_string(RunStatus.KILLED)))
        closed.append(r.info.run_id)
    return closed


def start_run(
    dataset: str, run_name: str, params: dict[str, Any], tags: dict[str, str], *, dataset_version: str | None = None
) -> Run:
    """Create a run in the dataset's experiment (:func:`experiment_name`) with params and tags, status RUNNING
    (runs of the experiment abandoned by killed stages are closed first).

    The run's source is this process's script (the stage that starts it: ``stages/train.py``)
    and its commit; its dataset input is ``dataset`` at ``dataset_version`` (the processed
    data's hash, "unversioned" when unknown).
    """
    client = store_client()
    exp = experiment_id(client, experiment_name(dataset))
    close_abandoned_runs(client, exp)
    context = context_tags()
    all_tags = {**context, **source_tags(context.get("git_commit")), **tags}
    # who holds it from the start: a stage that dies before its first status is closed KILLED later
    all_tags = _clean_tags({**all_tags, "cvcl.host": socket.gethostname(), "cvcl.pid": str(os.getpid())})
    created = with_retries(lambda: client.create_run(exp, tags=all_tags, run_name=run_name))
    run = Run(client, created.info.run_id, experiment_name(dataset), run_name)
    try:
        run.log_params(params)
        run.log_dataset(dataset, dataset_version)
    except BaseException:
        with contextlib.suppress(Exception):  # not left RUNNING by a stage that goes on living (a thread's)
            client.set_terminated(run.run_id, "FAILED")  # once: with_retries could wait for minutes
        raise
    return run


def resume_run(run_id: str, experiment: str, name: str) -> Run:
    """Reopen a run an interrupted stage left, to continue it (status RUNNING again)."""
    client = store_client()
    run = Run(client, run_id, experiment, name)
    if not _exists(run):
        raise DataError(run_id, "the checkpoint's MLflow run is not in the tracking store")
    with_retries(lambda: client.set_tag(run_id, "cvcl.resumed", "true"))
    reason = with_retries(lambda: client.get_run(run_id)).data.tags.get("cvcl.end_reason")
    if reason:  # closed KILLED while its holder was gone: the reason becomes history, the run lives on
        with_retries(lambda: client.set_tag(run_id, "cvcl.interrupted", reason))
        with_retries(lambda: client.delete_tag(run_id, "cvcl.end_reason"))
    return run


def last_logged_step(run: Run, key: str = "loss") -> int:
    """The highest step of ``key`` already in the store (-1 if none)."""
    history = with_retries(lambda: run.client.get_metric_history(run.run_id, key))
    return max((m.step for m in history), default=-1)


def _fork(source: Run, reason: str, params: dict[str, Any]) -> Run:
    """A copy of ``source`` (params, tags, metric histories, artifacts) with ``params`` replacing
    the values logged there."""
    from mlflow.entities import Metric

    client = source.client
    old = with_retries(lambda: client.get_run(source.run_id))
    # the source stays the stage that trained the model (the fork only re-infers or re-evaluates it)
    tags = {k: v for k, v in old.data.tags.items() if not k.startswith("mlflow.") or k.startswith("mlflow.source.")}
    tags.update(context_tags())
    tags.update({"cvcl.forked_from": source.run_id, "cvcl.fork_reason": reason})
    name = f"{old.info.run_name}-{time.strftime('%H%M%S')}"
    created = with_retries(lambda: client.create_run(old.info.experiment_id, tags=tags, run_name=name))
    run = Run(client, created.info.run_id, source.experiment, name)
    run.log_params({**{k: v for k, v in old.data.params.items() if k not in params}, **params})
    if old.inputs is not None and old.inputs.dataset_inputs:
        with_retries(lambda: client.log_inputs(run.run_id, datasets=list(old.inputs.dataset_inputs)))
    for key in old.data.metrics:
        history = with_retries(partial(client.get_metric_history, source.run_id, key))
        run._pending += [Metric(m.key, m.value, m.timestamp, m.step) for m in history]
        run.flush()
    with tempfile.TemporaryDirectory() as tmp:
        if with_retries(lambda: client.list_artifacts(source.run_id)):
            local = client.download_artifacts(source.run_id, "", tmp)
            with_retries(lambda: client.log_artifacts(run.run_id, local))
    return run


def open_run(run_file: str | Path, stage_params: dict[str, Any]) -> Run:
    """Reopen the run named in ``run_file`` and log this stage's params to it.

    If the run already holds some of these params with other values, the run is forked and
    the fork gets the new values.
    """
    if not Path(run_file).is_file():
        raise DataError(run_file, "not found; run the stages before this one first (dvc repro)")
    record = json.loads(Path(run_file).read_text())
    client = store_client()
    run = Run(client, record["run_id"], record.get("experiment", ""), record.get("run_name", ""))
    found = with_retries(lambda: client.get_experiment_by_name(run.experiment)) if run.experiment else None
    if found is not None:
        close_abandoned_runs(client, found.experiment_id)
    if not _exists(run):
        # The store does not know the run (a fresh clone restoring DVC outputs, a deleted
        # mlflow.db): start a new one rather than fail; the tag says what happened.
        return start_run(
            record.get("experiment", "cvcl-unknown").removeprefix("cvcl-"),
            record.get("run_name") or "recovered",
            stage_params,
            {"cvcl.recovered_from": record["run_id"]},
        )
    try:
        run.log_params(stage_params)
    except ParamConflict as conflict:
        return _fork(run, f"changed params: {conflict}", stage_params)
    run.set_tags({k: v for k, v in context_tags().items() if k.startswith("dvc_")})
    return run


def _exists(run: Run) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        with_retries(lambda: run.client.get_run(run.run_id))
        return True
    except MlflowException:
        return False


@contextlib.contextmanager
def stage_status(run: Run) -> Iterator[Run]:
    """Mark the run RUNNING for the stage, FINISHED after it, FAILED if it raises."""
    run.set_status("RUNNING")
    try:
        yield run
    except TrackingServerError:
        # the server stayed away past the wait: closing the run would wait as long again; it
        # stays RUNNING until the rerun resumes it (or a later stage here closes it KILLED)
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            run.flush()
            run.set_status("FAILED")
        raise
    run.flush()
    run.set_status("FINISHED")
