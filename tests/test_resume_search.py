"""A search's trial whose Ray worker is SIGKILLed is run again by Ray Tune on a live worker
(FailureConfig) and goes on from its last completed epoch, in the same run: it ends as the same
trial never killed. Real processes, a real signal, a local Ray."""

import json
import os
import signal
import time

from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main

from conftest import Process, all_runs, curve, ray_env

# One trial (ASHA has no other to prune it for); 8,000 training images, so that the kill lands
# while the trial trains.
SETTINGS = ["--limit", "10000", "--epochs", "6", "--backend", "tensorflow", "--seed", "7"]
SEARCHED = ("learning_rate", "dropout_rate", "units", "batch_size", "optimizer")


def trials(experiment):
    runs = all_runs(experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                          key=lambda r: r.info.start_time)


def first_trial_training(job, timeout: float = 300):
    """The first trial's run once it has logged an epoch: (run id, its worker's pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.popen.poll() is None:
        for run in all_runs("killed") if MlflowClient().get_experiment_by_name("killed") else []:
            if run.data.tags.get("fmtrain.tune.trial") == "0" and "val_loss" in run.data.metrics:
                return run.info.run_id, int(run.data.tags["fmtrain.process"].rpartition(":")[2])
        time.sleep(0.2)
    if job.popen.poll() is None:
        os.killpg(job.popen.pid, signal.SIGKILL)  # the search and its Ray; ray_tmp ends the rest
    job.wait()
    raise AssertionError("trial 0 logged no epoch:\n" + "\n".join(job.lines[-20:] + job.err[-20:]))


def test_a_trial_whose_worker_is_killed_resumes_in_its_run_as_never_killed(store, tmp_path, real_data_dir,
                                                                         ray_tmp):
    data = ["--data_dir", str(real_data_dir), "--quiet"]
    job = Process(["fmtrain", "tune", "--trials", "1", *SETTINGS, *data, "--experiment", "killed"],
                  env=ray_env(store, ray_tmp), cwd=tmp_path)
    run_id, worker = first_trial_training(job)
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer would
    assert job.wait() == 0, "\n".join(job.lines[-20:] + job.err[-20:])
    assert "trial-00: worker died (its Ray worker process died); retry 1 of 2, from the last completed epoch" \
        in job.lines
    parent, killed = trials("killed")
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_failed"] == 0
    (trial,) = killed  # one run for the trial
    assert trial.data.tags["fmtrain.tune.trial"] == "0"
    assert trial.info.run_id == run_id and trial.info.status == "FINISHED" and "fmtrain.error" not in trial.data.tags
    (resume,) = json.loads(trial.data.tags["fmtrain.resumes"])
    assert resume["why"].startswith("WorkerDied: its Ray worker process died") and resume["from_epoch"] >= 1
    assert int(trial.data.tags["fmtrain.process"].rpartition(":")[2]) != worker  # a live worker finished it
    client = MlflowClient()
    assert {"model-whole.keras", "model.weights.h5", "history.csv", "loss-curve.png"} <= \
        {a.path for a in client.list_artifacts(trial.info.run_id)}
    table = client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path))
    assert open(table).read().count(",FINISHED,") == 1  # the search's table is complete

    # `fmtrain train` with the trial's settings, never killed (in this process: the reference's
    # own process start is not what this test checks): the same epochs on the same step axis,
    # the same scores.
    chosen = [part for name in SEARCHED for part in (f"--{name}", trial.data.params[name])]
    assert main(["train", "--config", "early-stopping", *SETTINGS, *chosen, *data,
                 "--experiment", "uninterrupted"]) == 0
    (reference,) = all_runs("uninterrupted")
    assert trial.data.params == reference.data.params
    steps = [step for step, _ in curve(trial)]
    assert steps == list(range(len(steps))) and len(steps) == len(curve(reference))
    for key in ("loss", "val_loss", "val_accuracy"):
        assert curve(trial, key) == curve(reference, key), key
    for key in ("final_val_loss", "final_val_accuracy", "stopped_epoch", "best_epoch"):
        assert trial.data.metrics.get(key) == reference.data.metrics.get(key), key
