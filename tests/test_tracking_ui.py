"""What runs and experiments carry for the MLflow UI: the experiment kind and saved view, each
run's dataset input and source (cvcl.tracking.ui, cvcl.tracking.run). The browser side is in
test_mlflow_ui.py (slow)."""

import json
import re
import sys
import types
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cvcl.tracking import run as run_module
from cvcl.tracking import ui
from cvcl.tracking.run import open_run, stage_status, start_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VERSION = "d41d8cd98f00b204e9800998ecf8427e.dir"  # DVC's md5 of a folder: 36 characters


@pytest.fixture
def as_train_stage(monkeypatch):
    """This process as DVC runs the train stage (``python -m stages.train``) at COMMIT."""
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", types.SimpleNamespace(name="stages.train"), raising=False)
    monkeypatch.setattr(run_module, "context_tags", lambda: {"git_commit": COMMIT})


def view_of(tags: dict) -> dict:
    """The saved view in an experiment's tags, checked as MLflow 3.17's UI checks it."""
    envelope = json.loads(tags[ui.RUNS_VIEW_TAG])
    assert isinstance(envelope["name"], str) and isinstance(envelope["createdAt"], int)
    assert isinstance(envelope["state"], str)  # the UI drops a view whose state is not a string
    return json.loads(envelope["state"])


def test_a_new_experiment_is_model_training_with_the_runs_view(mlflow_store, as_train_stage):
    run = start_run("toy", "r", {}, {}, dataset_version=VERSION)
    client = MlflowClient(mlflow_store)
    tags = client.get_experiment(client.get_run(run.run_id).info.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    state = view_of(tags)
    for column in (
        "metrics.`dice`",
        "params.`method`",
        "params.`labeled`",
        "params.`loss.pcl_weight`",
        "params.`loss.vcl_weight`",
        "params.`seed`",
        "metrics.`hd95`",
        "metrics.`val_dice`",
        "attributes.`Dataset`",
        "attributes.`Source`",
    ):
        assert column in state["selectedColumns"], column
    assert state["orderByKey"] == "metrics.`dice`" and state["orderByAsc"] is False
    assert set(state["columnOrder"]) == set(state["columnWidths"])


def test_a_run_has_its_dataset_input_and_its_stage_as_source(mlflow_store, as_train_stage):
    run = start_run("synthetic-la", "r", {"labeled": 4}, {}, dataset_version=VERSION)
    got = MlflowClient(mlflow_store).get_run(run.run_id)
    [item] = got.inputs.dataset_inputs
    assert (item.dataset.name, item.dataset.digest) == ("synthetic-la", VERSION)
    assert json.loads(item.dataset.source) == {"uri": "data/processed"}
    assert {(t.key, t.value) for t in item.tags} == {("mlflow.data.context", "training")}
    tags = got.data.tags
    assert tags["mlflow.source.name"] == "stages/train.py"
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.git.commit"] == COMMIT == tags["git_commit"]


def test_a_run_without_a_data_version_still_names_its_dataset(mlflow_store, as_train_stage):
    run = start_run("toy", "r", {}, {})
    [item] = MlflowClient(mlflow_store).get_run(run.run_id).inputs.dataset_inputs
    assert (item.dataset.name, item.dataset.digest) == ("toy", "unversioned")


def test_an_older_experiment_gets_the_defaults_but_keeps_a_users_choice(mlflow_store, as_train_stage):
    client = MlflowClient(mlflow_store)
    old = client.create_experiment("cvcl-old")  # made before the defaults existed
    mine = client.create_experiment("cvcl-mine", tags={"mlflow.experimentKind": "genai_development"})
    start_run("old", "r", {}, {})
    start_run("mine", "r", {}, {})
    old_tags, mine_tags = client.get_experiment(old).tags, client.get_experiment(mine).tags
    assert old_tags["mlflow.experimentKind"] == "custom_model_development"
    assert mine_tags["mlflow.experimentKind"] == "genai_development"
    assert view_of(old_tags) == view_of(mine_tags) == ui.runs_view_state()

    # once given, the defaults are not given again: a view the user deleted stays deleted
    client.delete_experiment_tag(old, ui.RUNS_VIEW_TAG)
    client.set_experiment_tag(old, "mlflow.experimentKind", "genai_development")
    start_run("old", "r2", {}, {})
    tags = client.get_experiment(old).tags
    assert ui.RUNS_VIEW_TAG not in tags
    assert tags["mlflow.experimentKind"] == "genai_development"


def test_a_refused_experiment_tag_does_not_stop_the_run(mlflow_store, as_train_stage, monkeypatch, capsys):
    from mlflow.exceptions import MlflowException

    MlflowClient(mlflow_store).create_experiment("cvcl-shared")

    def refuse(self, experiment_id, key, value):
        raise MlflowException("Permission denied (HTTP 403)")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refuse)
    run = start_run("shared", "r", {}, {})
    assert MlflowClient(mlflow_store).get_run(run.run_id).info.status == "RUNNING"
    assert "could not set the tag" in capsys.readouterr().out


def test_a_fork_keeps_the_dataset_and_the_train_stage_as_source(mlflow_store, as_train_stage, tmp_path, monkeypatch):
    run = start_run("toy", "r", {"infer.stride": 8}, {}, dataset_version=VERSION)
    with stage_status(run):
        run.log_metrics({"loss": 0.5}, 0)
    run.to_file(tmp_path / "run.json")
    # an evaluate stage with other params, at a later commit
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", types.SimpleNamespace(name="stages.evaluate"))
    monkeypatch.setattr(run_module, "context_tags", lambda: {"git_commit": "f" * 40})
    fork = open_run(tmp_path / "run.json", {"infer.stride": 16})
    assert fork.run_id != run.run_id
    got = MlflowClient(mlflow_store).get_run(fork.run_id)
    [item] = got.inputs.dataset_inputs
    assert (item.dataset.name, item.dataset.digest) == ("toy", VERSION)
    assert got.data.tags["mlflow.source.name"] == "stages/train.py"
    assert got.data.tags["mlflow.source.git.commit"] == COMMIT


def test_source_of_a_script_and_without_a_commit(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "tools" / "go.py")])
    assert ui.stage_source() == "tools/go.py"
    assert ui.source_tags("none") == {"mlflow.source.name": "tools/go.py", "mlflow.source.type": "LOCAL"}


def test_runs_url_opens_the_training_runs_in_the_saved_view():
    url = ui.runs_url("http://mlflow.lab:5000/", "7")
    assert url.startswith("http://mlflow.lab:5000/#/experiments/7/runs?")
    assert "workflowType=machine_learning" in url and f"viewStateShareKey={ui.RUNS_VIEW_ID}" in url
    assert "viewStateShareKey" not in ui.runs_url("http://mlflow.lab:5000", "7", with_view=False)


def test_the_ui_page_sets_the_model_training_switch_only_where_the_browser_has_no_choice():
    from mlflow.server import app as flask_app

    from cvcl.tracking.ui_app import LANDING_SCRIPT, TELEMETRY_OFF_SCRIPT, WORKFLOW_KEY, with_landing_default

    page = (Path(flask_app.static_folder) / "index.html").read_text()
    served = with_landing_default(page)
    head = served.index("<head>") + len("<head>")
    assert served[head:].startswith(LANDING_SCRIPT)  # before the UI's own scripts
    assert served.replace(LANDING_SCRIPT, "") == page
    assert with_landing_default(page, telemetry_off=True).replace(LANDING_SCRIPT + TELEMETRY_OFF_SCRIPT, "") == page
    assert f'd("{WORKFLOW_KEY}","\\"machine_learning\\"")' in LANDING_SCRIPT
    # the key is the one MLflow's bundle reads (useLocalStorage: "<key>_v<version>")
    bundle = "".join(
        p.read_text(errors="ignore") for p in (Path(flask_app.static_folder) / "static" / "js").glob("main.*.js")
    )
    assert 'key:"mlflow.workflowType",version:1' in bundle and WORKFLOW_KEY == "mlflow.workflowType_v1"
    assert with_landing_default("<html>no head</html>") == "<html>no head</html>"


def test_the_ui_state_the_page_writes_is_the_one_the_pinned_mlflow_bundle_reads():
    """Fails when a new MLflow renames the local-storage keys or the runs-table state's fields
    that cvcl/tracking/ui_app.py writes (then look again in its bundle, and pin it)."""
    from mlflow.server import app as flask_app

    from cvcl.tracking import ui_app

    js = Path(flask_app.static_folder) / "static" / "js"
    bundle = "".join(p.read_text(errors="ignore") for p in js.glob("*.js"))
    for key, version in (
        ("mlflow.workflowType", 1),
        ("mlflow.assistant.fab.autoOpenedOnFirstLoad", 1),
        ("mlflow.assistant.panelOpen", 1),
    ):
        assert f'key:"{key}",version:{version}' in bundle, key
    assert '"mlflow.settings.telemetry.enabled",a="mlflow.telemetry.info.alert.dismissed",s=1' in bundle
    assert ui_app.TELEMETRY_ENABLED_KEY == "mlflow.settings.telemetry.enabled_v1"
    assert ui_app.TELEMETRY_NOTICE_KEY == "mlflow.telemetry.info.alert.dismissed_v1"
    # LocalStorageUtils: "MLflowLocalStorage-1.1-ExperimentPage-<JSON ids>-ReactComponentState"
    assert 'return["MLflowLocalStorage",r.version,this.scope,e].join("-")' in bundle
    assert 'r.version="1.1"' in bundle and 'reactComponentStateKey="ReactComponentState"' in bundle
    assert 'getStoreForComponent("ExperimentPage",e).loadComponentState()' in bundle
    assert ui_app.runs_state_key("3") == 'MLflowLocalStorage-1.1-ExperimentPage-["3"]-ReactComponentState'
    # every field of the state is one the UI keeps (its search facets, its ExperimentPageUIState)
    ui_fields = set(re.search(r'const a=\[("selectedColumns"[^\]]*)\]', bundle).group(1).replace('"', "").split(","))
    facets = {"searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter", "datasetsFilter"}
    assert set(ui.runs_view_state()) <= ui_fields | facets | {"modelVersionFilter"}
    for field in ("compareRunCharts", "compareRunSections", "runsHiddenMode", "isAccordionReordered"):
        assert field in ui_fields, field
    # the chart cards' types and fields (RunsChartsCardConfig and its subclasses)
    for text in ('e.PARALLEL="PARALLEL"', 'e.SCATTER="SCATTER"', 'e.LINE="LINE"', "this.selectedParams=[]"):
        assert text in bundle, text
    assert 'this.xaxis={key:"",type:"METRIC"}' in bundle and '"PARAM"===e[t].type' in bundle
    assert "this.metricSectionId=" in bundle and "this.runsCountToCompare=" in bundle


def test_the_training_curve_charts_are_the_supervised_loss_every_methods_terms_and_val_dice():
    from cvcl import methods

    terms = {term.name for name in methods.names() for term in methods.get(name).terms}
    assert set(ui.CURVE_METRICS) == {methods.SUPERVISED_TERM.name, *terms, "val_dice"}
    assert len(ui.CURVE_METRICS) == len(set(ui.CURVE_METRICS))
