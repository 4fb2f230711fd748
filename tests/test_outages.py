"""A tracking server that hangs, a journal torn mid-line, a replay killed between a record and its
mark, a journal on a disk that fills: each made for real (SIGSTOP, a cut file, SIGKILL, a tmpfs),
on real `fmtrain` processes and a real `mlflow server`. What is checked is what the store holds
after `fmtrain sync`: every epoch exactly once, nothing lost.
"""

import os
import shutil
import signal
import subprocess
import threading

import mlflow
import pytest
from inotify_simple import INotify
from inotify_simple import flags as inotify_flags
from mlflow.tracking import MlflowClient

from conftest import Process, fmtrain_here, restartable_server, start_process

TRAIN = ["fmtrain", "train", "--config", "adam", "--limit", "6000", "--epochs", "6"]
# MLflow's retries shortened far below the outages here, as a user may set them.
SHORT = dict(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
             MLFLOW_HTTP_REQUEST_TIMEOUT="5", FMTRAIN_STORE_PROBE_SECONDS="1")


def env_for(uri, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FMTRAIN_"))}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true", **extra)
    return env


@pytest.fixture
def server(tmp_path):
    """A real `mlflow server` that a test pauses (SIGSTOP), kills (SIGKILL) and starts again."""
    yield from restartable_server(tmp_path, signal.SIGKILL)


def the_run(uri):
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fashion-mnist").experiment_id])
    return run


def epochs_once(uri, run_id, epochs):
    """Each epoch's metrics are in the run exactly once, at its step; one model."""
    client = MlflowClient(uri)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "epoch_seconds"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == list(range(epochs)), key
    run = client.get_run(run_id)
    models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    return run, models


@pytest.mark.timeout(900)
def test_a_server_that_hangs_from_epoch_2_costs_bounded_time_and_sync_records_each_epoch_once(
        server, tmp_path, real_data_dir):
    """Default settings: the bound is MLflow's time-outs (fmtrain's 10 s, one retry) and the
    60 s the run's end waits for the store (docs/operations.md). The server, stopped, still
    accepts connections; once it goes on, it may carry out requests that waited in its socket,
    which the journal's replay must not duplicate."""
    uri = server[0]
    job = Process([*TRAIN, "--data_dir", real_data_dir], env=env_for(uri), cwd=tmp_path)
    job.expect("Epoch 2/6")
    server.pause()
    assert job.wait(timeout=240) == 1, "\n".join(job.err[-20:])
    (run_id,) = os.listdir(tmp_path / "fmtrain-journal")
    assert job.err[-1].startswith(f"fmtrain: error: run {run_id} (adam) ran to its end, but the tracking store "
                                  f"{uri} could not be reached to record all of it; its records wait in ")
    assert "Traceback" not in "\n".join(job.err)
    server.go_on()
    synced = fmtrain_here(["sync", "--all"], env=env_for(uri), cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert synced.stdout.strip().endswith("record(s) replayed; the run is FINISHED")
    run, models = epochs_once(uri, run_id, 6)
    assert run.info.status == "FINISHED" and len([m for m in models if m.name == "adam"]) == 1


def test_a_torn_journal_and_a_replay_killed_between_a_record_and_its_mark_lose_and_duplicate_nothing(
        server, tmp_path, real_data_dir):
    uri, start, stop = server
    env = env_for(uri, **SHORT, FMTRAIN_STORE_WAIT_SECONDS="2")
    job = Process([*TRAIN, "--limit", "2000", "--data_dir", real_data_dir], env=env, cwd=tmp_path)
    job.expect("Epoch 2/6")
    stop()  # killed: epochs 1 on, the model and the end wait in the journal
    assert job.wait(timeout=300) == 1, "\n".join(job.err[-20:])
    (run_id,) = os.listdir(tmp_path / "fmtrain-journal")
    folder = tmp_path / "fmtrain-journal" / run_id
    lines = (folder / "journal.jsonl").read_bytes()
    last = lines.rstrip(b"\n").rsplit(b"\n", 1)[1]
    assert b'"op": "end"' in last
    # Torn: the process died while it wrote its last record, the run's end.
    (folder / "journal.jsonl").write_bytes(lines[:len(lines) - len(last) // 2])
    untouched = tmp_path / "untouched"
    shutil.copytree(folder, untouched)
    start()

    # A sync killed for real while it replays: SIGKILL when it first marks a record replayed.
    notify = INotify()
    notify.add_watch(folder, inotify_flags.CREATE)
    sync = start_process(["fmtrain", "sync", run_id], env=env, cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = threading.Event()

    def kill_at_the_first_mark():
        with notify:
            while sync.poll() is None:
                if any(event.name == "replayed.tmp" for event in notify.read(timeout=200)):
                    sync.send_signal(signal.SIGKILL)
                    killed.set()
                    return

    watcher = threading.Thread(target=kill_at_the_first_mark, daemon=True)
    watcher.start()
    sync.wait(timeout=300)
    watcher.join(timeout=10)
    assert killed.is_set() and sync.returncode == -signal.SIGKILL

    done = fmtrain_here(["sync", run_id], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    torn = f"{folder}/journal.jsonl line {len(lines.splitlines())}"
    assert done.stderr.strip().splitlines() == [
        f"fmtrain: warning: {torn} was cut short (its process died, or its disk filled, while writing it); "
        "the record was left out"]
    assert done.stdout.strip().endswith("the run is RUNNING (its process left before its end: "
                                        "`fmtrain reap --yes` ends it)")
    run, models = epochs_once(uri, run_id, 6)
    assert len([m for m in models if m.name == "adam"]) == 1
    files = sorted(a.path for a in MlflowClient(uri).list_artifacts(run_id))

    # The worst case of a kill between applying and marking: every record applied, none marked.
    # The journal as it was before any sync, replayed again over the store that holds all of it.
    shutil.copytree(untouched, folder)
    again = fmtrain_here(["sync", run_id], env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun, models = epochs_once(uri, run_id, 6)
    assert len([m for m in models if m.name == "adam"]) == 1
    assert rerun.data.metrics == run.data.metrics and rerun.data.params == run.data.params
    assert sorted(a.path for a in MlflowClient(uri).list_artifacts(run_id)) == files


def test_a_journal_whose_disk_fills_fails_the_run_in_one_line_and_loses_nothing_logged(
        server, tmp_path, real_data_dir):
    """The journal on a 256 KiB tmpfs: an epoch's state (about 1 MB) cannot be kept there, and the
    run fails. The server comes back while the run's end waits for it: the run ends FAILED, with
    every record logged before."""
    uri, start, stop = server
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        env = env_for(uri, **SHORT, FMTRAIN_STORE_WAIT_SECONDS="300", FMTRAIN_JOURNAL_DIR=str(small))
        job = Process([*TRAIN, "--limit", "2000", "--data_dir", real_data_dir], env=env, cwd=tmp_path)
        job.expect("Epoch 2/6")
        stop()
        job.expect("waiting up to 300 s for the tracking store", timeout=300)  # it failed; its end waits
        start()
        assert job.wait(timeout=300) == 1, "\n".join(job.err[-20:])
    finally:
        subprocess.run(["umount", str(small)], check=True)
    mlflow.set_tracking_uri(uri)
    run = the_run(uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["fmtrain.error"].startswith(f"no space left on device writing {small}/{run.info.run_id}")
    assert job.err == [f"fmtrain: error: run {run.info.run_id} (adam) failed: {run.data.tags['fmtrain.error']}"]
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [0]  # the epoch logged before the outage, kept
