"""Which experiment a command's runs go to: --experiment, else MLflow's own variables
(MLFLOW_EXPERIMENT_NAME, MLFLOW_EXPERIMENT_ID) with MLflow's rules, else fashion-mnist; a
deleted experiment or variables that disagree get one line and no run."""

import os

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import fmtrain_here

TINY = ["--epochs", "1", "--limit", "100", "--quiet", "--system_metrics", "0", "--checkpoint", "false"]


def experiments_of_runs(client) -> dict[str, int]:
    """How many runs each active experiment holds, by name."""
    return {e.name: len(client.search_runs([e.experiment_id])) for e in client.search_experiments()}


def test_mlflows_variables_choose_the_experiment_and_an_explicit_one_wins(store, tiny_data_dir):
    train = ["train", *TINY, "--data_dir", tiny_data_dir]
    client = MlflowClient()
    by_id = client.create_experiment("by-id")
    assert fmtrain_here(train, env=dict(os.environ, MLFLOW_EXPERIMENT_ID=by_id)).returncode == 0
    both = dict(os.environ, MLFLOW_EXPERIMENT_NAME="by-name", MLFLOW_EXPERIMENT_ID=by_id)
    done = fmtrain_here([*train, "--experiment", "explicit"], env=both)
    assert done.returncode == 0, done.stderr[-2000:]
    assert experiments_of_runs(client) == {"by-id": 1, "explicit": 1, "Default": 0}


@pytest.mark.parametrize("variables, experiment, line", [
    ({"MLFLOW_EXPERIMENT_NAME": "named", "MLFLOW_EXPERIMENT_ID": "{other}"}, None,
     "MLFLOW_EXPERIMENT_ID is {other}, but experiment 'named' (MLFLOW_EXPERIMENT_NAME) has id {named}; unset one of them"),
    ({"MLFLOW_EXPERIMENT_ID": "424242"}, None,
     "MLFLOW_EXPERIMENT_ID is 424242, but {store} has no experiment with that id; unset it or set it to an "
     "existing experiment's"),
    ({"MLFLOW_EXPERIMENT_NAME": "gone"}, None, "experiment 'gone' (id {gone}) is deleted; restore it "
     "(`mlflow experiments restore --experiment-id {gone}`) or choose another with --experiment"),
    ({"MLFLOW_EXPERIMENT_ID": "{gone}"}, None, "experiment 'gone' (id {gone}) is deleted; restore it "
     "(`mlflow experiments restore --experiment-id {gone}`) or choose another with --experiment"),
    ({}, "gone", "experiment 'gone' (id {gone}) is deleted; restore it "
     "(`mlflow experiments restore --experiment-id {gone}`) or choose another with --experiment"),
], ids=["name-and-id-disagree", "unknown-id", "deleted-by-name", "deleted-by-id", "deleted-explicit"])
def test_a_deleted_experiment_or_variables_that_disagree_get_one_line_and_no_run(
        variables, experiment, line, store, tiny_data_dir):
    client = MlflowClient()
    ids = {name: client.create_experiment(name) for name in ("named", "other", "gone")}
    client.delete_experiment(ids["gone"])
    env = dict(os.environ, **{key: value.format(**ids) for key, value in variables.items()})
    done = fmtrain_here(["train", *TINY, "--data_dir", tiny_data_dir,
                         *(["--experiment", experiment] if experiment else [])], env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == f"fmtrain: error: {line.format(store=store, **ids)}"
    assert not mlflow.search_runs(search_all_experiments=True, output_format="list")
