"""What the MLflow UI needs from our runs and experiments to show them without hand-picking.

MLflow 3's UI is built for GenAI first: an experiment opens on its GenAI overview (traces,
token usage) unless the UI takes it for model training, the runs table fills Dataset and Source
only for runs that log them (a dataset input, the ``mlflow.source.*`` tags), and the columns we
compare by (Dice, method, labeled, the loss weights) must be picked by hand. So the pipeline

- tags its experiments with the model-training kind (:data:`EXPERIMENT_KIND_TAG`), which MLflow
  UIs without the global "GenAI | Model training" switch read to open the runs table;
- saves a view of the runs table in each experiment (:data:`RUNS_VIEW_TAG`, under *Views*), in
  the format MLflow 3.17's UI writes when a user saves one;
- gives each run the source tags MLflow gives a script's runs (:func:`source_tags`).

MLflow 3.17.2's UI picks an experiment's landing tab from its global switch alone (kept in the
browser's local storage, ``mlflow.workflowType_v1``, GenAI by default) or from the URL parameter
``workflowType``, not from the kind tag: :func:`runs_url` opens the runs whatever the switch says.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by MLflow's UI (ExperimentKind in its bundle)
MODEL_TRAINING = "custom_model_development"  # the kind the UI shows as "Machine learning"
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."  # MLflow 3.17's UI keeps saved runs views in these tags
RUNS_VIEW_ID = "cvcl-runs"
RUNS_VIEW_NAME = "cvcl: Dice, method, labeled, loss weights"
RUNS_VIEW_TAG = SAVED_VIEW_PREFIX + RUNS_VIEW_ID
# Set once the defaults above were given to an experiment: later runs then leave its tags
# alone, so a view or kind a user deleted or changed stays as they left it.
DEFAULTS_TAG = "cvcl.ui_defaults"
DEFAULTS_VERSION = "1"

# The view's columns in order, with pixel widths that fit them in a 1400-pixel window with the
# sidebar collapsed (the run name carries the seed). The UI keeps widths only for columns it is
# given an order for; run name, created and duration are always shown, the others are chosen.
VIEW_COLUMNS = {
    "attributes.`Run Name`": 175,
    "runDateAndNestInfo": 115,
    "attributes.`Dataset`": 180,
    "duration": 70,
    "attributes.`Source`": 85,
    "metrics.`dice`": 75,
    "params.`method`": 105,
    "params.`labeled`": 70,
    "params.`loss.pcl_weight`": 115,
    "params.`loss.vcl_weight`": 115,
    "params.`loss.consistency`": 115,
}
_ALWAYS_SHOWN = {"attributes.`Run Name`", "runDateAndNestInfo", "duration"}


def runs_view_state() -> dict:
    """The runs-table state of the saved view: MLflow 3.17's fields, as its UI saves them."""
    return {
        "searchFilter": "",
        "orderByKey": "metrics.`dice`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [c for c in VIEW_COLUMNS if c not in _ALWAYS_SHOWN],
        "columnOrder": list(VIEW_COLUMNS),
        "columnWidths": dict(VIEW_COLUMNS),
        "runsHiddenMode": "FIRST_10_RUNS",
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": None,
        "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def runs_view_tag(created_ms: int) -> tuple[str, str]:
    """(key, value) of the experiment tag that holds the saved view. The UI accepts the state as
    plain JSON as well as deflated: plain stays readable in the tag."""
    envelope = {
        "name": RUNS_VIEW_NAME,
        "createdAt": created_ms,
        "updatedAt": created_ms,
        "state": json.dumps(runs_view_state(), separators=(",", ":")),
    }
    return RUNS_VIEW_TAG, json.dumps(envelope, separators=(",", ":"))


def experiment_defaults(created_ms: int) -> dict[str, str]:
    """The tags a new experiment of the pipeline gets."""
    key, value = runs_view_tag(created_ms)
    return {EXPERIMENT_KIND_TAG: MODEL_TRAINING, key: value, DEFAULTS_TAG: DEFAULTS_VERSION}


def missing_defaults(tags: Mapping[str, str], created_ms: int) -> dict[str, str]:
    """The default tags an existing experiment lacks (one made before the pipeline set them);
    none once it had them, and never one replacing a tag it has (a user's choice)."""
    if DEFAULTS_TAG in tags:
        return {}
    return {k: v for k, v in experiment_defaults(created_ms).items() if k not in tags}


def runs_url(base: str, experiment_id: str, with_view: bool = True) -> str:
    """The experiment's runs table, whatever the UI's GenAI/training switch says, in the saved
    view if ``with_view`` (only where the experiment has it: the UI sends a link to a missing
    view to the experiment's landing tab, GenAI's by default)."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return f"{url}&viewStateShareKey={RUNS_VIEW_ID}" if with_view else url


def stage_source() -> str:
    """The script of this process as the repository names it: ``stages/train.py`` for
    ``python -m stages.train`` (DVC's command), wherever the workspace is (a queued experiment
    runs in a temporary copy of the repository)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:  # python -m: a module name, the same in any copy of the repository
        return spec.name.replace(".", "/") + ".py"
    path = Path(sys.argv[0])
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def source_tags(commit: str | None) -> dict[str, str]:
    """MLflow's source tags for a run: the stage script, LOCAL (what MLflow records for a
    script run on this machine) and the commit when there is one."""
    tags = {"mlflow.source.name": stage_source(), "mlflow.source.type": "LOCAL"}
    if commit and re.fullmatch(r"[0-9a-f]{40}", commit):
        tags["mlflow.source.git.commit"] = commit
    return tags
