"""The MLflow UI as ``make ui`` serves it: MLflow's own app, opening on the ablation.

MLflow 3.17's UI, in a fresh browser, opens ``/`` on its "Welcome to MLflow" page (GenAI demos,
a telemetry notice), opens the Assistant panel once on a local server, opens an experiment on its
GenAI overview (a sidebar switch, "GenAI | Model training", kept in the browser's local storage
as ``mlflow.workflowType_v1``, starts on GenAI, whatever the experiment's kind tag says), and
shows a first visit to the runs table with run name, created, dataset, duration and source.
MLflow has no server setting for any of these: each is state the UI keeps in the browser's local
storage. So this app is MLflow's, with one change: the page that loads the UI first writes the
project's choices into that state where the browser holds none yet
(:data:`LANDING_SCRIPT`), so a user's own choices are kept once made:

- ``/`` opens the experiments list, and the switch is on "Model training";
- the Assistant is not opened by itself (its button stays, bottom right);
- each experiment of the pipeline (tag :data:`cvcl.tracking.ui.DEFAULTS_TAG`) opens on its runs
  with the ablation's columns sorted by Dice and its charts set up
  (:func:`cvcl.tracking.ui.runs_view_state`, the state of the saved view);
- where the server runs with MLflow's telemetry off (``MLFLOW_DISABLE_TELEMETRY``, which
  ``make ui`` and ``cvcl server`` set), the UI's own telemetry setting is off too and its notice,
  which asks the user to choose in the settings, counts as answered (:data:`TELEMETRY_OFF_SCRIPT`).

The keys and formats are MLflow 3.17.2's (pinned in requirements/constraints.txt);
tests/test_tracking_ui.py fails when a new MLflow's bundle no longer has them. Nothing else of
MLflow changes (API, artifacts, stores).

It is an MLflow app plugin (entry points ``mlflow.app`` in pyproject.toml), so ``mlflow ui`` and
``mlflow server`` keep doing the server setup themselves: ``--app-name cvcl`` (``make ui``), and
``--app-name cvcl-basic-auth``, MLflow's basic-auth app with the same change (``make server``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from cvcl.tracking.ui import DEFAULTS_TAG, runs_view_state

# The UI's useLocalStorage keys are "<key>_v<version>"; its older LocalStorageUtils keys are
# "MLflowLocalStorage-<1.1>-<component>-<id>-<item>", the experiment page's id being the JSON list
# of the experiment ids it shows.
WORKFLOW_KEY = "mlflow.workflowType_v1"
MACHINE_LEARNING = "machine_learning"
ASSISTANT_AUTO_OPENED_KEY = "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1"
ASSISTANT_PANEL_KEY = "mlflow.assistant.panelOpen_v1"
TELEMETRY_ENABLED_KEY = "mlflow.settings.telemetry.enabled_v1"
TELEMETRY_NOTICE_KEY = "mlflow.telemetry.info.alert.dismissed_v1"
RUNS_STATE_PREFIX = "MLflowLocalStorage-1.1-ExperimentPage-"
RUNS_STATE_SUFFIX = "-ReactComponentState"


def runs_state_key(experiment_id: str) -> str:
    """The local-storage key of an experiment's runs table (columns, sort, charts)."""
    return RUNS_STATE_PREFIX + json.dumps([experiment_id]) + RUNS_STATE_SUFFIX


def _js(value: object) -> str:
    """``value`` as a JavaScript literal, safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


def _stored(value: object) -> str:
    """A JavaScript literal of ``value`` as the UI stores it (JSON text)."""
    return _js(json.dumps(value, separators=(",", ":")))


# Runs before the UI's own scripts, which read the state once as they start. Local storage may
# be off (private windows), hence the try. The experiments are asked for synchronously: the UI
# reads an experiment's state as it first draws it, which an answer arriving later would miss.
# The request is the UI's own, with the user's login, so only experiments they may read are seen.
# %-formatting: the script's braces would all need doubling in an f-string or str.format.
LANDING_SCRIPT = (  # noqa: UP031
    "<script>(function(){try{var s=window.localStorage,l=window.location;"
    "function d(k,v){if(s.getItem(k)===null){s.setItem(k,v)}}"
    "d(%s,%s);d(%s,%s);"
    'if(l.hash===""||l.hash==="#"||l.hash==="#/"){window.history.replaceState(null,"",l.pathname+l.search+"#/experiments")}'
    'var x=new XMLHttpRequest();x.open("GET","ajax-api/2.0/mlflow/experiments/search?max_results=1000",false);x.send();'
    "if(x.status===200){(JSON.parse(x.responseText).experiments||[]).forEach(function(e){"
    "if((e.tags||[]).some(function(t){return t.key===%s})){d(%s+JSON.stringify([e.experiment_id])+%s,%s)}})}"
    "}catch(e){}})()</script>"
) % (
    _js(WORKFLOW_KEY),
    _stored(MACHINE_LEARNING),
    _js(ASSISTANT_AUTO_OPENED_KEY),
    _stored(True),
    _js(DEFAULTS_TAG),
    _js(RUNS_STATE_PREFIX),
    _js(RUNS_STATE_SUFFIX),
    _stored(runs_view_state()),
)
TELEMETRY_OFF_SCRIPT = (  # noqa: UP031
    "<script>try{var s=window.localStorage;if(s.getItem(%s)===null){s.setItem(%s,%s)}"
    "if(s.getItem(%s)===null){s.setItem(%s,%s)}}catch(e){}</script>"
) % (
    _js(TELEMETRY_ENABLED_KEY),
    _js(TELEMETRY_ENABLED_KEY),
    _stored(False),
    _js(TELEMETRY_NOTICE_KEY),
    _js(TELEMETRY_NOTICE_KEY),
    _stored(True),
)


def with_landing_default(index_html: str, telemetry_off: bool = False) -> str:
    """The UI's ``index.html`` with :data:`LANDING_SCRIPT` first in its head, then
    :data:`TELEMETRY_OFF_SCRIPT` if ``telemetry_off``."""
    marker = "<head>"
    at = index_html.find(marker)
    if at < 0:  # not the page we know: serve it unchanged rather than break the UI
        return index_html
    at += len(marker)
    scripts = LANDING_SCRIPT + (TELEMETRY_OFF_SCRIPT if telemetry_off else "")
    return index_html[:at] + scripts + index_html[at:]


@functools.cache
def _index_page(static_folder: str) -> str | None:
    """The served page, made once per process (None where MLflow's build has no UI)."""
    from mlflow.telemetry.utils import is_telemetry_disabled

    page = Path(static_folder) / "index.html"
    if not page.is_file():
        return None
    return with_landing_default(page.read_text(encoding="utf-8"), telemetry_off=is_telemetry_disabled())


def _serve_index():
    from flask import Response, current_app

    page = _index_page(str(current_app.static_folder))
    if page is None:  # MLflow's own message for a source install without the built UI
        from mlflow.server import serve

        return serve()
    return Response(page, mimetype="text/html")


def _mlflow_flask_app():
    from mlflow.server import app as flask_app

    flask_app.view_functions["serve"] = _serve_index
    return flask_app


def create_app():
    """The app ``mlflow ui --app-name cvcl`` runs (an ASGI app, as ``mlflow ui`` serves by default)."""
    from mlflow.server.fastapi_app import create_fastapi_app

    return create_fastapi_app(_mlflow_flask_app())


def create_auth_app():
    """The app ``mlflow server --app-name cvcl-basic-auth`` runs: MLflow's basic-auth app (logins,
    permissions; it bootstraps the admin user in each worker) over the same UI."""
    from mlflow.server.auth import create_app as create_basic_auth_app

    return create_basic_auth_app(_mlflow_flask_app())
