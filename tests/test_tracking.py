"""The tracking boundary's own rules: params logged once, failures recorded, errors for people."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from fmtrain import errors
from fmtrain.tracking import logged, runs, store

from conftest import all_runs


def test_params_already_logged_by_mlflow_run_are_kept_when_they_mean_the_same(store):
    mlflow.set_experiment("fashion-mnist")
    with mlflow.start_run() as run:
        mlflow.log_params({"epochs": "5.0", "dropout_rate": "0", "config": "adam"})
        logged.log_params(run.info.run_id,
                           {"epochs": "5", "dropout_rate": "0.0", "config": "adam", "seed": "42"})
        with pytest.raises(ValueError, match="param epochs is already logged .* as '5.0' but resolves to '6'"):
            logged.log_params(run.info.run_id, {"epochs": "6"})
    assert MlflowClient().get_run(run.info.run_id).data.params == {
        "epochs": "5.0", "dropout_rate": "0", "config": "adam", "seed": "42"}


def test_a_failure_inside_a_tracked_run_marks_it_failed_and_names_it(store):
    mlflow.set_experiment("fashion-mnist")
    with pytest.raises(errors.RunFailed, match=r"run \w+ \(demo\) failed: KeyError: 'x'") as caught:
        with runs.tracked_run("demo", {"a": "1"}):
            raise KeyError("x")
    (run,) = all_runs()
    assert run.info.run_id == caught.value.run_id and run.info.status == "FAILED"
    assert run.data.tags["fmtrain.error"] == "KeyError: 'x'" and run.data.params == {"a": "1"}
    from fmtrain.cli.app import exit_code

    assert exit_code(caught.value) == 1 and exit_code(ValueError("bad")) == 2


def test_a_run_resumed_under_mlflow_run_keeps_the_params_mlflow_logged(store, monkeypatch):
    """Under `mlflow run -e sweep`, MLflow creates the run and logs `configs=all` first."""
    mlflow.set_experiment("fashion-mnist")
    existing = MlflowClient().create_run(mlflow.get_experiment_by_name("fashion-mnist").experiment_id)
    MlflowClient().log_param(existing.info.run_id, "configs", "all")
    monkeypatch.setenv("MLFLOW_RUN_ID", existing.info.run_id)
    with runs.tracked_run("sweep", {"configs": "all", "epochs": "2"}) as run_id:
        assert run_id == existing.info.run_id
    (run,) = all_runs()
    assert run.data.params == {"configs": "all", "epochs": "2"} and run.info.status == "FINISHED"


def test_unreachable_store_is_described_by_its_uri(monkeypatch):
    """A real request to a port where nothing listens."""
    from conftest import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: uri)
    with store.fail_fast(), pytest.raises(Exception) as caught:
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
    assert store.describe_store_error(caught.value) == (f"tracking store {uri} cannot be reached; "
                                                        "start it or point MLFLOW_TRACKING_URI at one that runs")


def test_a_store_error_is_told_by_its_type_and_status_whatever_its_words(tmp_path, monkeypatch):
    """A real read-only sqlite file; and the errors MLflow raises for a server's 401 and 403 (their
    error codes are the statuses'), worded to mislead: the words are never read."""
    import sqlite3

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST, PERMISSION_DENIED, UNAUTHENTICATED

    from fmtrain.tracking.store_errors import Fault, classify

    path = tmp_path / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)  # the tables
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: f"sqlite:///{path}")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db, pytest.raises(sqlite3.Error) as caught:
        db.execute("INSERT INTO experiments (name, lifecycle_stage) VALUES ('401 403', 'active')")
    assert classify(caught.value) is Fault.READ_ONLY
    assert store.describe_store_error(caught.value) == (f"tracking store sqlite:///{path} cannot be written; "
                                                        "check the file's and folder's permissions")
    forbidden = MlflowException("error code 401: Unauthorized credentials", error_code=PERMISSION_DENIED)
    assert "denied this user permission" in store.describe_store_error(forbidden)
    unauthorized = MlflowException("error code 403: Forbidden", error_code=UNAUTHENTICATED)
    assert "refused the credentials" in store.describe_store_error(unauthorized)
    measured = MlflowException("metric val_loss=0.403 was refused: Connection refused", error_code=BAD_REQUEST)
    assert classify(measured) is Fault.REFUSED
    assert store.describe_store_error(measured).endswith(": metric val_loss=0.403 was refused: Connection refused")


def test_the_ui_link_names_the_experiment_and_how_to_serve_a_local_store(store, tmp_path, monkeypatch):
    from fmtrain.tracking import ui

    experiment = mlflow.set_experiment("fashion-mnist").experiment_id
    with mlflow.start_run() as run:
        pass
    link = ui.ui_link(run.info.run_id)
    assert link.url == f"http://127.0.0.1:5000/#/experiments/{experiment}/runs?workflowType=machine_learning"
    assert link.serve_command == f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}"
    page = ui.ui_link(run.info.run_id, run_page=True).url
    assert f"/#/experiments/{experiment}/runs/{run.info.run_id}?" in page
    monkeypatch.setattr(ui, "tracking_uri", lambda: "https://mlflow.example.org/")  # a server's own UI
    assert ui.ui_link(run.info.run_id) == ui.UiLink(
        f"https://mlflow.example.org/#/experiments/{experiment}/runs?workflowType=machine_learning")
    monkeypatch.setattr(ui, "tracking_uri", lambda: "postgresql://fm:secret@db/mlflow")
    assert ui.ui_link(run.info.run_id).serve_command == "mlflow ui --backend-store-uri postgresql://fm:***@db/mlflow"
