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

# The view's columns in order, with pixel widths that keep the ablation's columns (method through
# val_dice) in sight in a 1366-pixel window beside MLflow's sidebars. The UI keeps widths only for
# columns it is given an order for; run name, created and duration are always shown, the others are
# chosen. Of the loss weights, the two the ablation varies (loss.consistency stays under Columns).
VIEW_COLUMNS = {
    "attributes.`Run Name`": 170,
    "params.`method`": 95,
    "params.`labeled`": 70,
    "params.`seed`": 55,
    "params.`loss.pcl_weight`": 112,
    "params.`loss.vcl_weight`": 112,
    "metrics.`dice`": 70,
    "metrics.`hd95`": 70,
    "metrics.`val_dice`": 78,
    "runDateAndNestInfo": 115,
    "duration": 70,
    "attributes.`Dataset`": 180,
    "attributes.`Source`": 85,
}
_ALWAYS_SHOWN = {"attributes.`Run Name`", "runDateAndNestInfo", "duration"}

# The training curves: the supervised loss, each method's unsupervised terms (cvcl.methods' Term
# names), the validation Dice. Charts of metrics a run set lacks are hidden (hideEmptyCharts).
# Written out, not read from the registry: infer and evaluate import this module, and reading
# the methods would make them depend on every method's code (tests/test_tracking_ui.py keeps
# the two in step).
CURVE_METRICS = (
    "loss_sup",
    "loss_mt",
    "loss_pcl_l2u",
    "loss_pcl_u2l",
    "loss_vcl_l",
    "loss_vcl_u",
    "loss_uamt",
    "val_dice",
)
ABLATION_SECTION = "cvcl-ablation"
CURVES_SECTION = "cvcl-curves"


def _card(kind: str, uuid: str, section: str, name: str, **fields: object) -> dict:
    """A chart card as MLflow 3.17's runs charts keep one (its ``RunsChartsCardConfig``)."""
    return {
        "uuid": uuid,
        "type": kind,
        "runsCountToCompare": 100,
        "metricSectionId": section,
        "deleted": False,
        "isGenerated": False,
        "displayName": name,
        **fields,
    }


def _param(key: str) -> dict:
    return {"key": key, "type": "PARAM"}


def _metric(key: str) -> dict:
    return {"key": key, "type": "METRIC", "dataAccessKey": key}


def chart_cards() -> list[dict]:
    """The ablation's charts: Dice by labeled volumes per method, Dice against each loss weight,
    then one line chart per training curve."""
    dice = _metric("dice")
    ablation = [
        _card(
            "PARALLEL",
            "cvcl-dice-by-labeled",
            ABLATION_SECTION,
            "Dice by labeled volumes, per method",
            selectedParams=["method", "labeled"],
            selectedMetrics=["dice"],
            showAllRuns=True,
        ),
        _card(
            "SCATTER", "cvcl-dice-vs-labeled", ABLATION_SECTION, "Dice vs labeled", xaxis=_param("labeled"), yaxis=dice
        ),
        _card(
            "PARALLEL",
            "cvcl-dice-by-weights",
            ABLATION_SECTION,
            "Dice by loss weights",
            selectedParams=["method", "loss.pcl_weight", "loss.vcl_weight"],
            selectedMetrics=["dice"],
            showAllRuns=True,
        ),
        _card(
            "SCATTER",
            "cvcl-dice-vs-pcl",
            ABLATION_SECTION,
            "Dice vs pcl_weight",
            xaxis=_param("loss.pcl_weight"),
            yaxis=dice,
        ),
        _card(
            "SCATTER",
            "cvcl-dice-vs-vcl",
            ABLATION_SECTION,
            "Dice vs vcl_weight",
            xaxis=_param("loss.vcl_weight"),
            yaxis=dice,
        ),
    ]
    curves = [
        _card(
            "LINE",
            f"cvcl-curve-{key}",
            CURVES_SECTION,
            key,
            metricKey=key,
            lineSmoothness=0,
            xAxisScaleType="linear",
            scaleType="linear",
            range={},
            xAxisKey="step",
            selectedXAxisMetricKey="",
            yAxisKey="metric",
            yAxisExpressions=[],
            ignoreOutliers=False,
            useGlobalXaxisKey=True,
            useGlobalLineSmoothing=True,
        )
        for key in CURVE_METRICS
    ]
    return ablation + curves


def chart_sections() -> list[dict]:
    """The charts' sections, the ablation's first (the UI adds its own for other metrics)."""
    return [
        {"uuid": uuid, "name": name, "display": True, "isReordered": False, "deleted": False, "isGenerated": False}
        for uuid, name in ((ABLATION_SECTION, "Ablation"), (CURVES_SECTION, "Training curves"))
    ]


def runs_view_state() -> dict:
    """The runs-table state of the saved view and of a first visit (:mod:`cvcl.tracking.ui_app`):
    MLflow 3.17's fields (its search facets and ``ExperimentPageUIState``), as its UI saves them."""
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
        # an ablation has more than 10 runs: the charts show them all, not the UI's first 10
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": chart_cards(),
        "compareRunSections": chart_sections(),
        "viewMaximized": False,
        "runListHidden": False,
        # keeps the ablation's sections first when the UI adds its own
        "isAccordionReordered": True,
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
