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
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://127.0.0.1:9")
    error = mlflow.exceptions.MlflowException("API request failed: Max retries exceeded with url")
    assert store.describe_store_error(error) == ("tracking store http://127.0.0.1:9 cannot be reached; "
                                                 "start it or point MLFLOW_TRACKING_URI at one that runs")


def test_a_read_only_sqlite_store_is_described_as_such_whatever_its_values_hold(monkeypatch):
    # sqlite's error quotes the SQL's parameters, whose timestamps, metrics or names may hold 401 or 403
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "sqlite:///mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    for values in ("'fashion-mnist', 1795774403712", "'fashion-mnist', 1795774401712", "'val_loss', 0.403",
                   "'fm', 403"):
        error = mlflow.exceptions.MlflowException(
            "(sqlite3.OperationalError) unable to open database file\n[SQL: INSERT INTO experiments (name, "
            f"creation_time) VALUES (?, ?)]\n[parameters: ({values})]")
        assert store.describe_store_error(error) == ("tracking store sqlite:///mlflow.db cannot be written; "
                                                     "check the file's and folder's permissions"), values
    forbidden = mlflow.exceptions.MlflowException("API request failed with error code 403 != 200")
    assert "denied this user permission" in store.describe_store_error(forbidden)
    unauthorized = mlflow.exceptions.MlflowException("API request failed with error code 401 != 200")
    assert "refused the credentials" in store.describe_store_error(unauthorized)
    measured = mlflow.exceptions.MlflowException("metric val_loss=0.403 was refused by the store")
    assert store.describe_store_error(measured).endswith(": metric val_loss=0.403 was refused by the store")


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
