"""The MLflow UI as ``make ui`` serves it: MLflow's own app, opening experiments on their runs.

MLflow 3.17's UI chooses an experiment's landing tab from a switch at the top of its sidebar,
"GenAI | Model training", which a browser keeps in local storage (``mlflow.workflowType_v1``)
and which starts on GenAI: a first visit to ``#/experiments/<id>`` lands on the traces overview,
whatever the experiment's kind tag says (:mod:`cvcl.tracking.ui`). This app is MLflow's, with
one change: the page that loads the UI first sets that switch to "Model training" when the
browser holds no choice yet. A user who flips the switch keeps their choice; nothing else of
MLflow changes (API, artifacts, stores).

It is an MLflow app plugin (entry points ``mlflow.app`` in pyproject.toml), so ``mlflow ui`` and
``mlflow server`` keep doing the server setup themselves: ``--app-name cvcl`` (``make ui``), and
``--app-name cvcl-basic-auth``, MLflow's basic-auth app with the same change (``make server``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

WORKFLOW_KEY = "mlflow.workflowType_v1"  # the UI's useLocalStorage key: "<key>_v<version>"
MACHINE_LEARNING = "machine_learning"
# Run before the UI's own scripts; local storage may be off (private windows), hence the try.
# %-formatting: the script's braces would all need doubling in an f-string or str.format.
LANDING_SCRIPT = (  # noqa: UP031
    "<script>try{if(window.localStorage.getItem(%s)===null){window.localStorage.setItem(%s,%s)}}catch(e){}</script>"
) % (json.dumps(WORKFLOW_KEY), json.dumps(WORKFLOW_KEY), json.dumps(json.dumps(MACHINE_LEARNING)))


def with_landing_default(index_html: str) -> str:
    """The UI's ``index.html`` with :data:`LANDING_SCRIPT` first in its head."""
    marker = "<head>"
    at = index_html.find(marker)
    if at < 0:  # not the page we know: serve it unchanged rather than break the UI
        return index_html
    at += len(marker)
    return index_html[:at] + LANDING_SCRIPT + index_html[at:]


@functools.cache
def _index_page(static_folder: str) -> str | None:
    """The served page, made once per process (None where MLflow's build has no UI)."""
    page = Path(static_folder) / "index.html"
    return with_landing_default(page.read_text(encoding="utf-8")) if page.is_file() else None


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
