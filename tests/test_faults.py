"""What happens when things go wrong: real processes, real signals, a real server that blinks.

Each test checks the exit status, the last line a person reads and the store's state afterwards.
"""

import csv
import fnmatch
import io
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import (
    PROJECT,
    Process,
    all_runs,
    descendants,
    fmtrain_here,
    free_port,
    make_dataset,
    restartable_server,
    run_fmtrain,
)


def env_for(store, **extra):
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, PYTHONUNBUFFERED="1", **extra)
    env.pop("MLFLOW_RUN_ID", None)
    return env


def fresh_runs(store):
    mlflow.set_tracking_uri(store)
    return all_runs()


@pytest.mark.parametrize("signum, code, words", [(signal.SIGTERM, 143, "killed by SIGTERM"),
                                                  (signal.SIGHUP, 129, "killed by SIGHUP")])
def test_a_signal_during_training_ends_the_run_killed(signum, code, words, store, tmp_path, real_data_dir):
    temp = tmp_path / "tmp"
    temp.mkdir()
    job = Process(["fmtrain", "train", "--limit", "2000", "--epochs", "50", "--patience", "none",
                   "--data_dir", str(real_data_dir)], env=env_for(store, TMPDIR=str(temp)), cwd=tmp_path)
    job.expect("Epoch 2/50")
    job.signal(signum)
    assert job.wait() == code
    (run,) = fresh_runs(store)
    assert job.last_error_line == f"fmtrain: run {run.info.run_id} (early-stopping) {words}; no run was left RUNNING"
    assert run.info.status == "KILLED" and run.data.tags["fmtrain.error"] == words
    assert list(temp.glob("fmtrain-*")) == []  # the run's temporary folder is gone too


def test_sigterm_during_a_sweep_ends_parent_and_child_killed(store, tmp_path, real_data_dir):
    job = Process(["fmtrain", "sweep", "--configs", "rmsprop-val,adam", "--limit", "2000", "--epochs", "50",
                   "--workers", "1", "--data_dir", str(real_data_dir)], env=env_for(store), cwd=tmp_path)
    job.expect("Epoch 2/50")
    job.signal(signal.SIGTERM)
    assert job.wait() == 143
    runs = fresh_runs(store)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert job.last_error_line.startswith(f"fmtrain: run {parent.info.run_id} (sweep) killed by SIGTERM; "
                                          f"run {child.info.run_id} (rmsprop-val) killed by SIGTERM")
    assert {r.data.tags["fmtrain.error"] for r in runs} == {"killed by SIGTERM"}



def test_sigterm_to_train_py_under_mlflow_run_tags_the_run(store, tmp_path, real_data_dir):
    job = Process(["mlflow", "run", str(PROJECT), "--env-manager", "local", "--experiment-name", "fashion-mnist",
                   "-P", "limit=2000", "-P", "epochs=50", "-P", "patience=none", "-P", f"data_dir={real_data_dir}"],
                  env=env_for(store), cwd=tmp_path)
    job.expect("Epoch 2/50")
    (shim,) = [pid for pid in descendants(job.popen.pid)
               if b"train.py" in open(f"/proc/{pid}/cmdline", "rb").read()
               and open(f"/proc/{pid}/comm").read().startswith("python")]
    os.kill(shim, signal.SIGTERM)
    assert job.wait() != 0
    (run,) = fresh_runs(store)
    assert run.data.tags["fmtrain.error"] == "killed by SIGTERM" and run.info.status in ("KILLED", "FAILED")


def test_a_run_whose_process_was_killed_is_found_and_ended_by_reap(store, tmp_path, real_data_dir):
    job = Process(["fmtrain", "train", "--limit", "2000", "--epochs", "50", "--data_dir", str(real_data_dir)],
                  env=env_for(store), cwd=tmp_path)
    job.expect("Epoch 2/50")
    job.signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL
    (run,) = fresh_runs(store)
    assert run.info.status == "RUNNING" and "fmtrain.heartbeat" in run.data.tags
    look = fmtrain_here(["reap"], env=env_for(store), cwd=tmp_path)  # in this process: the store is checked
    assert look.returncode == 0 and look.stdout.startswith(f"{run.info.run_id}  early-stopping  no heartbeat")
    assert "fmtrain reap --yes" in look.stdout and MlflowClient().get_run(run.info.run_id).info.status == "RUNNING"
    act = fmtrain_here(["reap", "--yes"], env=env_for(store), cwd=tmp_path)
    assert act.returncode == 0 and "-> KILLED" in act.stdout
    ended = MlflowClient().get_run(run.info.run_id)
    assert ended.info.status == "KILLED" and ended.data.tags["fmtrain.error"].startswith("process gone")


def test_a_live_run_is_not_stale(store):
    from fmtrain.tracking import lost_runs, queries, runs

    mlflow.set_experiment("fashion-mnist")
    with runs.tracked_run("alive", {}) as run_id:
        record = queries.run_record(run_id)
        assert lost_runs.process_alive(record) is True
        assert lost_runs.stale([record], stale_after=120) == []
        assert [s.run_id for s in lost_runs.stale([record], stale_after=120, now=time.time() + 600)] == [run_id]


def test_a_sweep_killed_mid_way_resumes_into_the_same_comparison(store, tmp_path, real_data_dir):
    argv = ["fmtrain", "sweep", "--configs", "rmsprop-val,adam,dropout", "--limit", "1000", "--epochs", "3",
            "--workers", "1", "--data_dir", str(real_data_dir)]
    job = Process(argv, env=env_for(store), cwd=tmp_path)
    job.expect("[1/3] rmsprop-val ... val_loss")
    job.expect("Epoch 2/3")  # adam is training
    job.signal(signal.SIGKILL)
    job.wait()
    runs = fresh_runs(store)
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "RUNNING", "RUNNING"]
    first = next(r for r in runs if r.info.run_name == "rmsprop-val")

    # The resume in this process (conftest.fmtrain_here): the kill above is of a real process.
    resumed = fmtrain_here(["sweep", "--resume", parent.info.run_id, "--quiet", "--data_dir", real_data_dir],
                           env=env_for(store), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"[1/3] rmsprop-val ... kept (run {first.info.run_id} FINISHED)" in resumed.stdout
    assert "[2/3] adam ... val_loss" in resumed.stdout and "[3/3] dropout ... val_loss" in resumed.stdout
    runs = {r.info.run_id: r for r in fresh_runs(store)}
    assert runs[parent.info.run_id].info.status == "FINISHED"
    assert "fmtrain.error" not in runs[parent.info.run_id].data.tags
    # The lost child went on in its own run from its last completed epoch: no KILLED run is left.
    assert [r for r in runs.values() if r.info.status == "KILLED"] == []
    (adam,) = [r for r in runs.values() if r.info.run_name == "adam"]
    (resume,) = json.loads(adam.data.tags["fmtrain.resumes"])
    assert resume["why"].startswith("process gone") and resume["from_epoch"] >= 1

    # The comparison holds one row per configuration, the latest child of each, in order, and
    # equals what an uninterrupted sweep of the same settings gives.
    client = MlflowClient()
    table = open(client.download_artifacts(parent.info.run_id, "sweep-summary.csv", str(tmp_path))).read()
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [row["config"] for row in rows] == ["rmsprop-val", "adam", "dropout"]
    assert rows[0]["run_id"] == first.info.run_id and all(row["status"] == "FINISHED" for row in rows)
    # The same sweep never killed, in this process (its process start is not what this checks).
    from fmtrain.cli.app import main

    assert main(argv[1:] + ["--quiet", "--experiment", "uninterrupted"]) == 0
    reference = [r for r in all_runs("uninterrupted") if "mlflow.parentRunId" in r.data.tags]
    by_name = {r.info.run_name: r.data.metrics["final_val_loss"] for r in reference}
    assert {row["config"]: float(row["final_val_loss"]) for row in rows} == pytest.approx(by_name, rel=1e-6)


@pytest.fixture
def tracking_server(tmp_path):
    """A real `mlflow server`, stopped (SIGTERM) and started again."""
    yield from restartable_server(tmp_path, signal.SIGTERM)


def test_a_tracking_server_restarted_during_training_is_ridden_out(tracking_server, tmp_path, real_data_dir):
    uri, start, stop = tracking_server
    job = Process(["fmtrain", "train", "--config", "dropout", "--limit", "2000", "--epochs", "8",
                   "--data_dir", str(real_data_dir)], env=env_for(uri), cwd=tmp_path)
    job.expect("Epoch 2/8")
    stop()
    time.sleep(12)  # the outage itself: the server stays down this long, then comes back
    start()
    assert job.wait(timeout=600) == 0, "\n".join(job.err[-20:])
    (run,) = fresh_runs(uri)
    assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    history = MlflowClient().get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == list(range(8))
    assert {"model-whole.keras", "history.csv"} <= {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert list(tmp_path.glob("mlruns")) == [] and not (tmp_path / "mlflow.db").exists()


# A store gone for good: tests/test_record.py (exit 1 naming the run and its journal, then sync).


def test_a_store_that_refuses_the_error_tag_keeps_the_original_error_patched_mlflow_client(store, tiny_data_dir,
                                                                                          monkeypatch, capsys):
    """Patches MlflowClient.log_batch to refuse the write of the run's error, and fmtrain's
    save_and_check to fail: a store that refuses one write but not others cannot be made for real."""
    from fmtrain.cli.app import main
    from fmtrain.learning import training

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while saving")

    real_log_batch = MlflowClient.log_batch

    def refusing(self, run_id, metrics=(), params=(), tags=(), *args, **kwargs):
        if any(tag.key == "fmtrain.error" for tag in tags or ()):
            raise mlflow.exceptions.MlflowException("store refused the tag")
        return real_log_batch(self, run_id, metrics, params, tags, *args, **kwargs)

    monkeypatch.setattr(training, "save_and_check", broken)
    monkeypatch.setattr(MlflowClient, "log_batch", refusing)
    assert main(["train", "--data_dir", str(tiny_data_dir), "--epochs", "1", "--quiet"]) == 1
    (run,) = all_runs()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"fmtrain: error: run {run.info.run_id} (early-stopping) failed: RuntimeError: disk full while "
        "saving (the store could not record this: store refused the tag)")
    assert run.info.status == "FAILED"


def test_four_first_starts_at_once_on_a_new_store_all_finish(tmp_path, real_data_dir):
    # On JAX, whose processes start sooner: the store's first opening is what this checks.
    store = f"sqlite:///{tmp_path / 'new.db'}"
    train = ["train", "--config", "adam", "--limit", "500", "--epochs", "1", "--quiet", "--backend", "jax",
             "--data_dir", str(real_data_dir)]
    with ThreadPoolExecutor(4) as pool:  # four processes started at once
        jobs = list(pool.map(lambda argv: run_fmtrain(argv, env=env_for(store), cwd=tmp_path), [train] * 4))
    assert [job.returncode for job in jobs] == [0, 0, 0, 0], [job.stderr for job in jobs]
    runs = fresh_runs(store)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    # Once the store exists, a train and a sweep share it at once as well (the sweep's children
    # in its own process; Ray workers sharing a store: tests/test_parallel.py).
    common = ["--limit", "500", "--epochs", "1", "--quiet", "--backend", "jax", "--data_dir", str(real_data_dir)]
    with ThreadPoolExecutor(2) as pool:
        jobs = list(pool.map(lambda argv: run_fmtrain(argv + common, env=env_for(store), cwd=tmp_path),
                             (["train"], ["sweep", "--configs", "adam,dropout", "--workers", "1"])))
    assert [job.returncode for job in jobs] == [0, 0], [job.stderr for job in jobs]
    runs = fresh_runs(store)
    assert len(runs) == 8 and {r.info.status for r in runs} == {"FINISHED"}


def test_a_loss_that_becomes_nan_fails_the_run(store, real_data_dir, capsys):
    from fmtrain.cli.app import main

    assert main(["train", "--config", "adam", "--optimizer", "sgd", "--learning_rate", "1e12",
                 "--limit", "500", "--epochs", "3", "--quiet", "--data_dir", str(real_data_dir)]) == 1
    (run,) = all_runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["fmtrain.error"].startswith("TrainingDiverged: the training loss became nan at epoch 0")
    assert "training stopped (try a smaller learning_rate)" in capsys.readouterr().err


def _one_line_exit_2(argv, env, cwd):
    done = run_fmtrain(argv[1:], env=env, cwd=cwd, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return lines[0]


def test_labels_outside_the_ten_classes_are_refused_when_read(store, tmp_path):
    import numpy as np

    from conftest import write_idx

    folder = make_dataset(tmp_path / "bad-labels")
    write_idx(folder / "train-labels-idx1-ubyte.gz", (np.arange(600) % 10 + (np.arange(600) == 7) * 5).astype(np.uint8))
    line = _one_line_exit_2(["fmtrain", "train", "--data_dir", str(folder)], env_for(store), tmp_path)
    assert line == (f"fmtrain: error: {folder}/train-labels-idx1-ubyte.gz: 1 label(s) outside 0-9 (the first, "
                    "at index 7, is 12); the file is not Fashion-MNIST's")
    assert fresh_runs(store) == []


def test_a_limit_above_the_training_set_is_refused(store, tmp_path, tiny_data_dir):
    line = _one_line_exit_2(["fmtrain", "train", "--limit", "5000", "--data_dir", str(tiny_data_dir)],
                            env_for(store), tmp_path)
    assert line == "fmtrain: error: limit 5000 is more than the 480 training images; use 0 for all of them"


@pytest.fixture
def immutable():
    """Make paths immutable (chattr +i: even root cannot write them) and restore them afterwards."""
    paths = []

    def make(path):
        subprocess.run(["chattr", "+i", str(path)], check=True)
        paths.append(path)

    yield make
    for path in reversed(paths):
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _without_store(env):
    env = dict(env)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def test_an_unwritable_working_directory_gets_one_line_naming_the_store(tmp_path, tiny_data_dir, immutable):
    folder = tmp_path / "readonly"
    folder.mkdir()
    immutable(folder)
    started = time.monotonic()
    line = _one_line_exit_2(["fmtrain", "train", "--data_dir", str(tiny_data_dir)],
                            _without_store(os.environ), folder)
    print(f"answered in {time.monotonic() - started:.1f} s")  # reported, never asserted
    assert line.startswith(f"fmtrain: error: tracking store {folder}/mlflow.db cannot be written: folder {folder}")
    assert "set MLFLOW_TRACKING_URI" in line


def test_a_read_only_store_file_gets_one_line_naming_it(tmp_path, tiny_data_dir, immutable):
    assert run_fmtrain(["reap"], env=_without_store(os.environ), cwd=tmp_path).returncode == 0  # creates ./mlflow.db
    immutable(tmp_path / "mlflow.db")
    line = _one_line_exit_2(["fmtrain", "train", "--data_dir", str(tiny_data_dir)],
                            _without_store(os.environ), tmp_path)
    assert line.startswith(f"fmtrain: error: tracking store {tmp_path}/mlflow.db cannot be written")


def test_an_unwritable_artifact_location_is_found_before_training(tmp_path, tiny_data_dir, immutable):
    (tmp_path / "mlruns").mkdir()
    immutable(tmp_path / "mlruns")
    line = _one_line_exit_2(["fmtrain", "train", "--data_dir", str(tiny_data_dir)],
                            _without_store(os.environ), tmp_path)
    assert line.startswith("fmtrain: error: artifact location ") and "cannot be written" in line
    assert "Epoch" not in line


def test_an_unreachable_tracking_server_gets_one_line_within_seconds(tmp_path, tiny_data_dir):
    uri = f"http://127.0.0.1:{free_port()}"
    line = _one_line_exit_2(["fmtrain", "train", "--data_dir", str(tiny_data_dir)], env_for(uri), tmp_path)
    assert line == (f"fmtrain: error: tracking store {uri} cannot be reached; start it or point "
                    "MLFLOW_TRACKING_URI at one that runs")


@pytest.mark.parametrize("settings, written", [
    ([], "fmtrain-"),  # the best checkpoint, the first file an epoch writes
    (["--checkpoint", "false"], "fmtrain-*/resume/state-?.npz"),  # an epoch's resumable state
])
def test_a_full_disk_names_the_folder_and_fails_the_run(settings, written, store, tmp_path, tiny_data_dir):
    """A real full file system: a 600 KiB tmpfs as the runs' temporary folder, where each epoch
    writes its checkpoint and its state."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)], check=True)
    try:
        done = run_fmtrain(["train", "--epochs", "2", "--quiet", "--data_dir", str(tiny_data_dir), *settings],
                           env=env_for(store, TMPDIR=str(small)), cwd=tmp_path, timeout=300)
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert done.returncode == 1
    (run,) = fresh_runs(store)
    assert run.info.status == "FAILED"
    assert done.stderr.strip().splitlines() == [f"fmtrain: error: run {run.info.run_id} (early-stopping) failed: "
                                                f"{run.data.tags['fmtrain.error']}"]
    assert fnmatch.fnmatch(run.data.tags["fmtrain.error"], f"no space left on device writing {small}/{written}*")
    # What was logged before the disk filled is kept: the settings and the model's summary.
    assert run.data.params["epochs"] == "2" and "model_summary.txt" in {
        a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
