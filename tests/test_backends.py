"""The JAX backend: the same run on another Keras backend, without TensorFlow in the process."""

import os
import subprocess
import sys

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from fmtrain.learning import data

from conftest import all_runs, fmtrain_here


def train_in_fresh_process(argv, store, cwd):
    """`fmtrain ARGV` in a new process; returns its stdout and the heavy modules it imported."""
    code = ("import sys\nfrom fmtrain.cli.app import main\ncode = main(sys.argv[1:])\n"
            "print('MODULES', sorted(m for m in ('tensorflow', 'jax') if m in sys.modules))\n"
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, MLFLOW_TRACKING_URI=store), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_jax_run_is_complete_without_tensorflow_and_loads_anywhere(store, tmp_path, real_data_dir, capsys):
    argv = ["train", "--backend", "jax", "--limit", "2000", "--epochs", "4", "--quiet",
            "--data_dir", str(real_data_dir), "--register_as", "fm-jax"]
    out = train_in_fresh_process(argv, store, tmp_path)
    assert "MODULES ['jax']" in out  # TensorFlow never loaded in the training process
    (run,) = all_runs()
    assert run.info.status == "FINISHED" and run.data.params["backend"] == "jax"
    metrics = run.data.metrics
    assert metrics["reload_checks_passed"] == 1.0 and metrics["final_val_accuracy"] > 0.75
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, "val_loss")] == \
        list(range(int(metrics["epochs_run"])))
    assert {"model-whole.keras", "model.weights.h5", "best-model.keras", "loss-curve.png",
            "history.csv", "model_summary.txt"} <= {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}

    # The model trained on JAX loads on TensorFlow (this process) and agrees with the run's check.
    model = mlflow.keras.load_model("models:/fm-jax/1")
    splits = data.load_splits(real_data_dir, 2000)
    predicted = model.predict(data.scale(splits.x_val), verbose=0).argmax(axis=1)
    assert np.mean(predicted == splits.y_val) == metrics["model_val_accuracy"]

    # A second run with the same seed on the same backend repeats every epoch exactly.
    train_in_fresh_process(argv[:-2], store, tmp_path)
    first, second = sorted(all_runs(), key=lambda r: r.info.start_time)
    history = [[m.value for m in MlflowClient().get_metric_history(r.info.run_id, "loss")] for r in (first, second)]
    assert history[0] == history[1]


def test_evaluate_loads_a_tensorflow_model_on_jax(store, tmp_path, real_data_dir):
    trained = fmtrain_here(["train", "--config", "adam", "--limit", "1000", "--epochs", "1", "--quiet",
                            "--data_dir", str(real_data_dir), "--register_as", "fm-tf"])
    assert trained.returncode == 0, trained.stderr[-3000:]  # on TensorFlow, in this process
    out = train_in_fresh_process(["evaluate", "--model_uri", "models:/fm-tf/1", "--backend", "jax",
                                  "--data_dir", str(real_data_dir)], store, tmp_path)
    assert "(fm-tf version 1) on 10000 test images" in out and "MODULES ['jax']" in out
    evaluation = next(r for r in all_runs() if "model_uri" in r.data.params)
    assert evaluation.data.metrics["accuracy_score"] > 0.6


JAX_RUN = ["train", "--backend", "jax", "--config", "adam", "--limit", "6000", "--epochs", "6", "--seed", "7",
           "--quiet"]


def test_a_jax_run_killed_after_epoch_4_resumed_and_one_synced_after_an_outage_equal_the_run_never_stopped(
        store, tmp_path, real_data_dir):
    """Cold `fmtrain` processes on JAX (the default backend of seeded sweeps): one never stopped,
    one SIGKILLed once its fourth epoch ended and resumed, and one whose server was killed at its
    third epoch and whose journal `fmtrain sync` replayed. Each logs the same val_loss at every
    epoch, to 7 decimals."""
    import signal

    from conftest import Process, fmtrain_here, restartable_server, run_fmtrain

    data = ["--data_dir", str(real_data_dir)]
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    reference = Process(["fmtrain", *JAX_RUN, *data, "--experiment", "reference"], env=env, cwd=tmp_path)
    killed = Process(["fmtrain", *JAX_RUN[:-1], *data, "--experiment", "killed"], env=env, cwd=tmp_path)
    killed.expect("Epoch 5/6")  # four epochs ended
    killed.signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL and reference.wait(timeout=600) == 0
    client = MlflowClient()
    (lost,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    resumed = run_fmtrain(["train", "--resume", lost.info.run_id, "--quiet", *data], env=env, cwd=tmp_path,
                          timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (never,) = client.search_runs([client.get_experiment_by_name("reference").experiment_id])

    def val_loss(run_id, uri=store):
        history = MlflowClient(uri).get_metric_history(run_id, "val_loss")
        return [round(m.value, 7) for m in sorted(history, key=lambda m: m.step)]

    expected = val_loss(never.info.run_id)
    assert len(expected) == 6 and val_loss(lost.info.run_id) == expected

    servers = restartable_server(tmp_path, signal.SIGKILL)
    uri, start, stop = next(servers)
    try:
        outage = dict(env, MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
                      MLFLOW_HTTP_REQUEST_TIMEOUT="5", FMTRAIN_STORE_PROBE_SECONDS="1", FMTRAIN_STORE_WAIT_SECONDS="1")
        job = Process(["fmtrain", *JAX_RUN[:-1], *data], env=outage, cwd=tmp_path)
        job.expect("Epoch 3/6")
        stop()
        assert job.wait(timeout=600) == 1, "\n".join(job.err[-20:])
        start()
        synced = fmtrain_here(["sync", "--all"], env=outage, cwd=tmp_path)  # on TensorFlow: a JAX model loads
        assert synced.returncode == 0 and synced.stdout.strip().endswith("the run is FINISHED"), synced.stderr
        remote = MlflowClient(uri)
        (run,) = remote.search_runs([remote.get_experiment_by_name("fashion-mnist").experiment_id])
        assert run.data.params["backend"] == "jax" and val_loss(run.info.run_id, uri) == expected
    finally:
        next(servers, None)
