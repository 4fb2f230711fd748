"""A search killed for real goes on: its whole process group SIGKILLed, then ``fmtrain tune
--resume`` in the same parent run; and a trial whose Ray worker is SIGKILLed, run again by Ray on a
live worker from its last completed epoch, in the same run. Real processes, real signals, a local
Ray."""

import json
import os
import signal
import time

from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main

from conftest import Process, all_runs, curve, fmtrain_here, ray_env

# Two trials, two at once on a local Ray instance; 8,000 training images, so that the kill lands
# while the first trial trains. Two epochs: the pruner stops a trial only before its last, so
# that the killed trial's path does not depend on the other's.
SETTINGS = ["--limit", "10000", "--epochs", "2", "--backend", "tensorflow", "--seed", "7"]
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
    job = Process(["fmtrain", "tune", "--trials", "2", "--max-concurrent", "2", *SETTINGS, *data,
                   "--experiment", "killed"],
                  env=ray_env(store, ray_tmp), cwd=tmp_path)
    run_id, worker = first_trial_training(job)
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer would
    assert job.wait() == 0, "\n".join(job.lines[-20:] + job.err[-20:])
    parent, killed = trials("killed")
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_failed"] == 0
    (trial,) = [run for run in killed if run.data.tags["fmtrain.tune.trial"] == "0"]  # one run for the trial
    assert any(line.startswith("(trial-00 pid=") and " trial-00: its worker died; Ray runs it again here" in line
               for line in job.lines), job.lines[-20:]
    assert trial.info.run_id == run_id and trial.info.status == "FINISHED" and "fmtrain.error" not in trial.data.tags
    (resume,) = json.loads(trial.data.tags["fmtrain.resumes"])
    assert resume["why"].startswith("WorkerDied: its Ray worker died") and resume["from_epoch"] >= 1
    assert int(trial.data.tags["fmtrain.process"].rpartition(":")[2]) != worker  # a live worker finished it
    client = MlflowClient()
    assert {"model-whole.keras", "model.weights.h5", "history.csv", "loss-curve.png"} <= \
        {a.path for a in client.list_artifacts(trial.info.run_id)}
    table = client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path))
    assert open(table).read().count(",FINISHED,") == 2  # the search's table is complete

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


def test_a_search_killed_as_a_process_group_continues_in_its_parent_run(store, tmp_path, real_data_dir, ray_tmp):
    data = ["--quiet", "--data_dir", str(real_data_dir)]
    job = Process(["fmtrain", "tune", "--trials", "6", "--max-concurrent", "2", "--limit", "3000", "--epochs", "3",
                   *data], env=ray_env(store, ray_tmp), cwd=tmp_path)
    job.expect("[2/6] trial-")  # two trials ended
    job.signal_group(signal.SIGKILL)  # the search's command and everything in its group
    assert job.wait() == -signal.SIGKILL
    parent, before = trials("fashion-mnist")
    assert parent.info.status == "RUNNING"
    kept = {r.info.run_id: r for r in before if r.info.status == "FINISHED"}
    assert len(kept) >= 2

    # The same search, continued in its parent run; a second --resume at once is refused.
    again = Process(["fmtrain", "tune", "--resume", parent.info.run_id, *data], env=ray_env(store, ray_tmp),
                    cwd=tmp_path)
    again.expect(f"search {parent.info.run_id}: 6 trials")
    twice = fmtrain_here(["tune", "--resume", parent.info.run_id, *data], cwd=tmp_path)
    assert twice.returncode == 2 and twice.stderr.strip().startswith(
        f"fmtrain: error: search {parent.info.run_id} is still running: its driver ("), twice.stderr
    assert again.wait(timeout=600) == 0, "\n".join(again.lines[-20:] + again.err[-20:])

    parent, after = trials("fashion-mnist")
    assert parent.info.status == "FINISHED"
    assert [r for r in after if r.info.status == "RUNNING"] == []
    finished = [r for r in after if r.info.status == "FINISHED"]
    assert len(finished) == 6 and len({r.data.tags["fmtrain.tune.trial"] for r in finished}) == 6
    for run_id, run in kept.items():  # the trials that ended before the kill are kept as they were
        now = MlflowClient().get_run(run_id)
        assert (now.info.status, now.info.end_time, now.data.metrics) == \
            (run.info.status, run.info.end_time, run.data.metrics)
    for run in after:
        if run.info.status == "KILLED":  # a trial the kill cut short, replaced by a new one
            assert run.data.tags["fmtrain.error"].startswith("process gone")
    table = MlflowClient().download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path))
    assert open(table).read().count(",FINISHED,") == 6

    # Refused in one line, nothing changed: a complete search, a run that is no search, other options.
    for argv, words in ((["--resume", parent.info.run_id], "is complete (FINISHED): there is nothing to resume"),
                        (["--resume", finished[0].info.run_id], "is not a search's parent run"),
                        (["--resume", parent.info.run_id, "--epochs", "5"], "give no --epochs with it")):
        refused = fmtrain_here(["tune", *argv, *data], cwd=tmp_path)
        assert refused.returncode == 2 and words in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
