"""The process tier: the installed console script, started cold in a session of its own, as a user
starts it. What is checked is what a shell and a person see: the exit status (``$?``), the
lines on standard error, and the store afterwards (no run left RUNNING).

Ctrl-C in a terminal sends SIGINT to the whole foreground process group; a supervisor sends
SIGTERM to the process. Each arrives here during the start-up's imports (before any run exists)
and in the middle of training.
"""

import os
import shutil
import signal
import subprocess
import time

import mlflow
import pytest

from conftest import Process, all_runs

TRAIN = ["fmtrain", "train", "--config", "adam", "--limit", "6000", "--epochs", "8"]


def env_for(store):
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    env.pop("MLFLOW_RUN_ID", None)
    return env


def importing_tensorflow(job, timeout: float = 120) -> None:
    """Wait until the process has loaded TensorFlow's library: it is in the middle of its
    start-up's imports, which go on for seconds after that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job.popen.poll() is None, "\n".join(job.lines[-20:] + job.err[-20:])
        try:
            with open(f"/proc/{job.popen.pid}/maps") as maps:
                if "libtensorflow" in maps.read():
                    return
        except OSError:
            pass
        time.sleep(0.02)  # polling the process's memory map, not a synchronisation delay
    raise AssertionError(f"TensorFlow was not loaded within {timeout} s")


def shell_status(code: int) -> int:
    """``$?`` as a shell reports a child's end: its exit status, or 128 + N for signal N."""
    return code if code >= 0 else 128 - code


def test_help_from_the_installed_console_script_is_fast_and_prints_its_commands(tmp_path):
    script = shutil.which("fmtrain")
    assert script and os.access(script, os.X_OK)
    started = time.monotonic()
    done = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    print(f"`fmtrain --help` took {time.monotonic() - started:.2f} s")  # reported, never asserted
    assert done.returncode == 0 and done.stderr == ""
    for command in ("train", "sweep", "tune", "evaluate", "register", "reap", "sync"):
        assert f"\n  {command} " in done.stdout
    assert list(tmp_path.iterdir()) == []  # no store opened


@pytest.mark.parametrize("signum, code, line", [
    (signal.SIGINT, 130, "fmtrain: interrupted (Ctrl-C); no run was left RUNNING"),
    (signal.SIGTERM, 143, "fmtrain: killed by SIGTERM; no run was left RUNNING"),
])
def test_a_signal_during_the_start_ups_imports_ends_it_in_one_line(signum, code, line, store, tmp_path,
                                                                    real_data_dir):
    job = Process([*TRAIN, "--data_dir", real_data_dir], env=env_for(store), cwd=tmp_path)
    importing_tensorflow(job)
    if signum == signal.SIGINT:
        job.signal_group(signum)  # Ctrl-C: the terminal's whole foreground group
    else:
        job.signal(signum)
    returned = job.wait(timeout=120)
    assert (returned, shell_status(returned)) == (code, code), "\n".join(job.err[-20:])
    assert job.err == [line]
    mlflow.set_tracking_uri(store)
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_ctrl_c_to_the_process_group_at_epoch_3_fails_the_run_in_one_line(store, tmp_path, real_data_dir):
    job = Process([*TRAIN, "--data_dir", real_data_dir], env=env_for(store), cwd=tmp_path)
    job.expect("Epoch 3/8")
    job.signal_group(signal.SIGINT)
    assert job.wait(timeout=120) == 130, "\n".join(job.err[-20:])
    mlflow.set_tracking_uri(store)
    (run,) = all_runs()
    assert run.info.status == "FAILED" and run.data.tags["fmtrain.error"] == "interrupted (Ctrl-C)"
    assert job.err == [f"fmtrain: run {run.info.run_id} (adam) interrupted (Ctrl-C); no run was left RUNNING"]
    # The epochs that ended before the signal are logged; the one it cut short is not.
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(len(history))) and 2 <= len(history) <= 3
