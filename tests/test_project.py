"""End to end on a real subset: `mlflow run . --env-manager local` and `fmtrain train`."""

import os
import subprocess

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main
from fmtrain.learning import configs

from conftest import PROJECT, all_runs, fmtrain_here

ARTIFACTS = {"model-whole.keras", "model.weights.h5", "best-model.keras", "loss-curve.png",
             "accuracy-curve.png", "history.csv", "model_summary.txt"}


def mlflow_run(*args, store_uri, cwd):
    env = dict(os.environ, MLFLOW_TRACKING_URI=store_uri)
    done = subprocess.run(["mlflow", "run", str(PROJECT), "--env-manager", "local", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_mlflow_run_logs_a_complete_comparable_run(store, tmp_path, real_data_dir):
    mlflow_run("-P", "config=early-stopping", "-P", "limit=2000", "-P", "epochs=5", "-P", "patience=1",
               "-P", f"data_dir={real_data_dir}", "--experiment-name", "fashion-mnist",
               store_uri=store, cwd=tmp_path)
    (run,) = all_runs()
    assert run.info.status == "FINISHED" and run.info.run_name == "early-stopping"
    assert run.data.tags["fmtrain.config"] == "early-stopping"
    params = run.data.params
    expected = configs.resolve("early-stopping", {"limit": 2000, "epochs": 5, "patience": 1}).to_params()
    for key, value in expected.items():  # -P values and resolved settings agree, one name each
        assert configs.parse_value(key, params[key]) == configs.parse_value(key, value), key
    assert params["train_size"] == "2000" and params["val_size"] == "500"
    assert params["data_source"] == str(real_data_dir)
    # Every param is a setting under its one name, or says what data the run saw: no duplicates.
    assert set(params) == set(expected) | {"config", "data_source", "train_size", "val_size", "data_dir"}

    client = MlflowClient()
    metrics = run.data.metrics
    epochs_run = int(metrics["epochs_run"])
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert steps[:epochs_run] == list(range(epochs_run)), key
    assert metrics["stopped_epoch"] == epochs_run - 1
    val_loss = [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")][:epochs_run]
    assert metrics["best_epoch"] == int(np.argmin(val_loss))
    assert metrics["final_val_loss"] == pytest.approx(min(val_loss), rel=1e-4)  # best weights kept
    assert metrics["reload_weights_val_accuracy"] == metrics["model_val_accuracy"] == \
        metrics["reload_whole_val_accuracy"]
    assert metrics["final_val_accuracy"] > 0.7
    assert metrics["best_checkpoint_val_loss"] == pytest.approx(min(val_loss), rel=1e-4)

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert ARTIFACTS <= artifacts
    history = client.download_artifacts(run.info.run_id, "history.csv", str(tmp_path))
    lines = open(history).read().splitlines()
    assert lines[0].split(",")[0] == "epoch" and len(lines) == epochs_run + 1

    import mlflow

    # The final model is named after the configuration, and carries the kept model's final
    # metrics: its epoch's val_loss (not the first epoch's) and final_val_loss alike; the best
    # checkpoint is a logged model beside it.
    models = {m.name: m for m in client.search_logged_models(experiment_ids=[run.info.experiment_id])}
    assert set(models) == {"early-stopping", "best-checkpoint"}
    logged_model = models["early-stopping"]
    assert logged_model.source_run_id == models["best-checkpoint"].source_run_id == run.info.run_id
    on_model = {m.key: m.value for m in logged_model.metrics}
    assert set(on_model) == {"loss", "accuracy", "val_loss", "val_accuracy", "final_val_loss",
                             "final_val_accuracy", "stopped_epoch"}
    assert on_model["val_loss"] == val_loss[int(metrics["best_epoch"])]  # restore_best_weights
    assert on_model["final_val_loss"] == metrics["final_val_loss"]
    assert on_model["stopped_epoch"] == metrics["stopped_epoch"]
    assert not [key for key in metrics if key.startswith("validation_")]
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith(f"val_loss {metrics['final_val_loss']:.4f}, val_accuracy ")
    assert "Set for this run: epochs=5, patience=1, limit=2000." in description

    model = mlflow.keras.load_model(f"runs:/{run.info.run_id}/early-stopping")
    # The logged model predicts like the chapter's: one step per call, a sane progress bar.
    assert model.steps_per_execution == 1 and model.get_compile_config()["steps_per_execution"] == 1
    whole = keras.models.load_model(client.download_artifacts(run.info.run_id, "model-whole.keras", str(tmp_path)))
    probe = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(model.predict(probe, verbose=0), whole.predict(probe, verbose=0), rtol=1e-6)
    logged = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/early-stopping")
    # The served flavor checks the images itself (tests/test_serving.py): the signature declares
    # one tensor of any values, and the answer's columns.
    assert logged.signature.inputs.to_dict()[0]["tensor-spec"] == {"dtype": "object", "shape": (-1,)}
    assert logged.signature.outputs.input_names() == ["class_name", "class_index", "probabilities"]


def test_fmtrain_train_logs_every_setting_and_registers(store, real_data_dir, capsys):
    assert main(["train", "--config", "rmsprop-5", "--limit", "1000", "--epochs", "2",
                 "--data-dir", str(real_data_dir), "--quiet", "--register-as", "fm"]) == 0
    out = capsys.readouterr().out
    assert "(rmsprop-5): 2 epochs, stopped_epoch 1" in out and "equal to the model in memory" in out
    (run,) = all_runs()
    assert "registered as version 1" in out
    assert MlflowClient().get_model_version("fm", "1").run_id == run.info.run_id
    assert set(configs.DEFAULT.to_params()) <= set(run.data.params)
    assert run.data.params["validation"] == "false" and run.data.params["optimizer"] == "rmsprop"

    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert ARTIFACTS - {"best-model.keras"} <= artifacts and "best-model.keras" not in artifacts
    assert run.data.metrics["stopped_epoch"] == 1 and run.data.metrics["reload_checks_passed"] == 1.0

    # Registering again from a shell: the logged model's own URI, no warning, the run linked.
    done = fmtrain_here(["register", run.info.run_id, "--name", "fm2", "--alias", "champion"],
                        env=dict(os.environ, MLFLOW_TRACKING_URI=store))
    assert done.returncode == 0 and done.stderr == "", done.stderr
    version = MlflowClient().get_model_version_by_alias("fm2", "champion")
    assert version.run_id == run.info.run_id and version.source.startswith("models:/m-")
    assert version.description.startswith("rmsprop-5: val_loss ")
    assert f"From run `{run.info.run_id}`." in version.description

    # The link to the run in the UI, and the command that serves this store.
    assert f"see it in the MLflow UI: mlflow ui --backend-store-uri {store}" in out
    assert f"/runs/{run.info.run_id}?workflowType=machine_learning" in out
    # runs:/RUN_ID/NAME loads a model by its name, the configuration's; another is refused.
    assert main(["evaluate", "--model_uri", f"runs:/{run.info.run_id}/model"]) == 2
    assert (f"run {run.info.run_id} has no model 'model'; its models: runs:/{run.info.run_id}/rmsprop-5"
            in capsys.readouterr().err)
