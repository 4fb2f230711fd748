"""The tracking boundary's own rules: params logged once, failures recorded, errors for people."""

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import all_runs
from fmtrain.tracking import runs


def test_params_already_logged_by_mlflow_run_are_kept_when_they_mean_the_same(store):
    mlflow.set_experiment("fashion-mnist")
    with mlflow.start_run() as run:
        mlflow.log_params({"epochs": "5.0", "dropout_rate": "0", "config": "adam"})
        runs.log_params(MlflowClient(), run.info.run_id,
                        {"epochs": "5", "dropout_rate": "0.0", "config": "adam", "seed": "42"})
        with pytest.raises(ValueError, match="param epochs is already logged .* as '5.0' but resolves to '6'"):
            runs.log_params(MlflowClient(), run.info.run_id, {"epochs": "6"})
    assert MlflowClient().get_run(run.info.run_id).data.params == {
        "epochs": "5.0", "dropout_rate": "0", "config": "adam", "seed": "42"}


def test_a_failure_inside_a_tracked_run_marks_it_failed_and_names_it(store):
    mlflow.set_experiment("fashion-mnist")
    with pytest.raises(runs.RunFailed, match=r"run \w+ \(demo\) failed: KeyError: 'x'") as caught:
        with runs.tracked_run("demo", {"a": "1"}):
            raise KeyError("x")
    (run,) = all_runs()
    assert run.info.run_id == caught.value.run_id and run.info.status == "FAILED"
    assert run.data.tags["fmtrain.error"] == "KeyError: 'x'" and run.data.params == {"a": "1"}
    assert not runs.is_input_error(caught.value) and runs.is_input_error(ValueError("bad"))


def test_unreachable_store_is_described_by_its_uri(monkeypatch):
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://127.0.0.1:9")
    error = mlflow.exceptions.MlflowException("API request failed: Max retries exceeded with url")
    assert runs.describe_for_person(error) == ("tracking store http://127.0.0.1:9 cannot be reached; "
                                               "start it or point MLFLOW_TRACKING_URI at one that runs")
