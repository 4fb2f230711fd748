"""The models a run logs: its final model and its best checkpoint, each an MLflow logged model with
its epoch's metrics; logged once, also by a run killed right after logging it and resumed, and by
a journal replayed twice."""

import os
import re
import signal
import time

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from fmtrain.tracking import journal

from conftest import Process, all_runs, curve, fmtrain_here


def models_of(run_id, client=None):
    """The run's logged models, by name: (id, status) each, every model the store holds."""
    client = client or MlflowClient()
    run = client.get_run(run_id)
    found = {}
    for model in client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                             filter_string=f"source_run_id = '{run_id}'"):
        found.setdefault(model.name, []).append((model.model_id, str(model.status)))
    return found


def test_the_final_model_and_the_best_checkpoint_are_logged_models_with_their_epochs_metrics(
        store, tiny_data_dir, tmp_path):
    done = fmtrain_here(["train", "--epochs", "4", "--patience", "none", "--quiet", "--data_dir", tiny_data_dir,
                         "--system_metrics", "0"])
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = all_runs()
    client = MlflowClient()
    models = {model.name: model for model in client.search_logged_models(experiment_ids=[run.info.experiment_id])}
    assert set(models) == {"early-stopping", "best-checkpoint"}
    assert {str(model.status) for model in models.values()} == {"READY"}
    best = int(run.data.metrics["best_epoch"])
    final = {m.key: (m.step, m.value) for m in models["early-stopping"].metrics}
    checkpoint = {m.key: (m.step, m.value) for m in models["best-checkpoint"].metrics}
    # Without early stopping the final model holds the last epoch's weights, the checkpoint its best's.
    assert final["val_loss"] == curve(run)[-1] and final["final_val_loss"][1] == run.data.metrics["final_val_loss"]
    assert checkpoint["val_loss"] == curve(run)[best]
    assert checkpoint["val_loss"][1] == run.data.metrics["best_checkpoint_val_loss"]
    assert {"model-whole.keras", "model.weights.h5", "best-model.keras"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}

    # register, runs:/ and --register_as mean the final model ...
    assert fmtrain_here(["register", run.info.run_id, "--name", "fm"]).returncode == 0
    assert client.get_model_version("fm", "1").source == f"models:/{models['early-stopping'].model_id}"
    # ... and MLflow registers the checkpoint by its name (docs/serving.md).
    version = mlflow.register_model(f"runs:/{run.info.run_id}/best-checkpoint", "fm-checkpoint")
    assert version.source == f"models:/{models['best-checkpoint'].model_id}"
    import keras

    saved = keras.saving.load_model(client.download_artifacts(run.info.run_id, "best-model.keras", str(tmp_path)))
    images = np.random.default_rng(0).random((4, 28, 28), dtype=np.float32)
    served = mlflow.pyfunc.load_model("models:/fm-checkpoint/1").predict(images)
    np.testing.assert_allclose(np.array(served["probabilities"].tolist()), saved.predict(images, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_run_killed_right_after_logging_its_model_resumes_with_one_final_model_and_one_checkpoint(
        store, tiny_data_dir, tmp_path):
    """SIGKILL as soon as the store holds the final model READY (polled every 50 ms), while the
    process goes on to its checkpoint; resumed with another experiment in MLFLOW_EXPERIMENT_NAME,
    the run stays in its own."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    job = Process(["fmtrain", "train", "--epochs", "2", "--patience", "none", "--data_dir", tiny_data_dir,
                   "--system_metrics", "0", "--experiment", "killed"], env=env, cwd=tmp_path)
    client, found = MlflowClient(), None
    deadline = time.monotonic() + 300
    while found is None and time.monotonic() < deadline and job.popen.poll() is None:
        experiment = client.get_experiment_by_name("killed")
        models = client.search_logged_models(experiment_ids=[experiment.experiment_id]) if experiment else []
        found = next((m for m in models if m.name == "early-stopping" and str(m.status) == "READY"), None)
        time.sleep(0.05)
    assert found is not None and job.popen.poll() is None, "\n".join(job.lines[-20:] + job.err[-20:])
    job.signal_group(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL
    run_id = found.source_run_id
    assert client.get_run(run_id).info.status == "RUNNING"

    done = fmtrain_here(["train", "--resume", run_id, "--quiet", "--data_dir", tiny_data_dir],
                        env=dict(env, MLFLOW_EXPERIMENT_NAME="elsewhere"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "killed"
    models = models_of(run_id)
    assert models == {"early-stopping": [(found.model_id, "READY")], "best-checkpoint": models["best-checkpoint"]}
    assert [status for _, status in models["best-checkpoint"]] == ["READY"]
    assert f"model: models:/{found.model_id}" in done.stdout
    assert {m.key for m in client.get_logged_model(found.model_id).metrics} >= {"val_loss", "final_val_loss"}
    gone = client.get_experiment_by_name("elsewhere")
    assert gone is None or not client.search_runs([gone.experiment_id])


def _journal_with_models(run_id: str, folder, keras_file, example_file) -> journal.Journal:
    """The journal a run leaves when the store is away as it logs its models: the final model,
    its checkpoint, then a metric linked to the final model, as fmtrain writes them."""
    kept = journal.Journal(run_id, folder / run_id)
    requirements = ["keras==3.15.1", "tensorflow==2.21.0"]
    for name, final in (("early-stopping", True), ("best-checkpoint", False)):
        kept.append({"op": "model", "name": name, "step": 1, "final": final, "requirements": requirements,
                     "backend": "tensorflow", "file": kept.keep_file(keras_file),
                     "example": kept.keep_file(example_file), "in_journal": ["example", "file"]})
    kept.append({"op": "batch", "metrics": [["final_val_loss", 0.5, int(time.time() * 1000), 0, journal.JOURNAL_MODEL]]})
    return kept


def test_a_journals_models_replayed_twice_are_logged_once_self_contained(store, tmp_path, monkeypatch):
    """`fmtrain sync` of a journal holding the run's two models, then again, as a sync killed
    between logging them and marking them replayed would leave it: one model of each name."""
    from fmtrain.learning import backend, configs, model

    backend.use()
    keras_file, example_file = tmp_path / "model.keras", tmp_path / "example.npy"
    model.build_model(configs.DEFAULT).save(keras_file)
    np.save(example_file, np.zeros((2, 28, 28), dtype=np.uint8))
    client = MlflowClient()
    run_id = client.create_run(mlflow.set_experiment("fashion-mnist").experiment_id).info.run_id
    monkeypatch.setenv("FMTRAIN_JOURNAL_DIR", str(tmp_path / "journals"))
    for _ in range(2):
        _journal_with_models(run_id, tmp_path / "journals", keras_file, example_file)
        done = fmtrain_here(["sync", run_id])
        assert done.returncode == 0, done.stderr[-3000:]
        assert re.search(rf"run {run_id}: 3 record\(s\) replayed", done.stdout)
    models = models_of(run_id)
    assert sorted(models) == ["best-checkpoint", "early-stopping"]
    assert all(len(each) == 1 and each[0][1] == "READY" for each in models.values())
    (final_id, _), = models["early-stopping"]
    linked = client.get_logged_model(final_id).metrics
    assert [m.value for m in linked if m.key == "final_val_loss"] == [0.5, 0.5]  # once per replay
    info = mlflow.models.get_model_info(f"models:/{final_id}")
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
