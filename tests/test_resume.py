"""A training killed for real (SIGKILL) and resumed with ``fmtrain train --resume``: one run, ending
as the same run never killed would, on a real subset; and each refusal, with the run unchanged.

The uninterrupted reference runs are trained once per module and shared.
"""

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import (
    PROJECT,
    Process,
    descendants,
    fmtrain_here,
    make_dataset,
    restartable_server,
    run_fmtrain,
)

LIMIT = ["--limit", "2000"]
ES = ["--epochs", "30", "--learning_rate", "0.003"]  # stops early on this subset: best epoch 5, stops at 7


@dataclass
class Place:
    uri: str
    folder: Path
    data_dir: Path

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env.update(MLFLOW_TRACKING_URI=self.uri, PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true")
        return env

    def run(self, *argv, check=True):
        done = run_fmtrain(argv, env=self.env(), cwd=self.folder, timeout=600)
        if check:
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    def here(self, *argv):
        """``fmtrain ARGV`` in this process (conftest.fmtrain_here): a reference run or a resume,
        whose own process start is not what these tests check; the kills are of real processes."""
        done = fmtrain_here(argv, env=self.env(), cwd=self.folder)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    def train(self, experiment, *argv):
        done = self.here("train", "--quiet", "--data_dir", str(self.data_dir), "--experiment", experiment,
                         *LIMIT, *argv)
        return re.search(r"^run (\w+) ", done.stdout, re.M).group(1)

    def killed(self, experiment, after: str, *argv):
        """A training SIGKILLed once it printed ``after``; returns its run id and output lines."""
        job = Process(["fmtrain", "train", "--data_dir", str(self.data_dir), "--experiment", experiment,
                       *argv], env=self.env(), cwd=self.folder)
        job.expect(after)
        job.signal(signal.SIGKILL)
        assert job.wait() == -signal.SIGKILL
        client = MlflowClient(self.uri)
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
        assert run.info.status == "RUNNING"
        return run.info.run_id, job.lines

    def resume(self, run_id, *argv, check=True):
        # A refusal keeps a process of its own: its whole stderr, one line, is what is checked.
        resume = ("train", "--resume", run_id, "--quiet", "--data_dir", str(self.data_dir), *argv)
        return self.here(*resume) if check else self.run(*resume, check=False)


@pytest.fixture(scope="module")
def place(tmp_path_factory, real_data_dir):
    folder = tmp_path_factory.mktemp("resume")
    return Place(f"sqlite:///{folder / 'mlflow.db'}", folder, real_data_dir)


@pytest.fixture(scope="module")
def reference(place):
    """8 epochs never killed (seed 42): the run a killed and resumed one must equal."""
    return place.train("reference", "--epochs", "8")


@pytest.fixture(scope="module")
def early_reference(place):
    """A run that EarlyStopping stops, never killed."""
    return place.train("early-reference", *ES)


def series(uri, run_id, key="val_loss"):
    return [(m.step, m.value) for m in sorted(MlflowClient(uri).get_metric_history(run_id, key),
                                              key=lambda m: (m.step, m.timestamp))]


def artifacts(uri, run_id, path=None):
    client = MlflowClient(uri)
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifacts(uri, run_id, item.path) if item.is_dir else [item.path]
    return sorted(found)


def same_run(uri, resumed, reference):
    """The resumed run holds what the reference holds: epochs, single metrics, params, artifacts,
    description; timings aside."""
    client = MlflowClient(uri)
    a, b = client.get_run(resumed), client.get_run(reference)
    assert a.info.status == "FINISHED" and "fmtrain.error" not in a.data.tags
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert series(uri, resumed, key) == series(uri, reference, key), key
    timings = ("fit_seconds", "seconds_per_epoch", "epoch_seconds")
    assert {k: v for k, v in a.data.metrics.items() if k not in timings and not k.startswith("system/")} == \
        {k: v for k, v in b.data.metrics.items() if k not in timings and not k.startswith("system/")}
    assert a.data.params == b.data.params
    assert artifacts(uri, resumed) == artifacts(uri, reference)
    assert not any(path.startswith("resume/") for path in artifacts(uri, resumed))  # removed when FINISHED
    assert a.data.tags["mlflow.note.content"] == b.data.tags["mlflow.note.content"]
    # One final model and, where the reference has one, one best checkpoint.
    assert logged_models(uri, resumed) == logged_models(uri, reference)


def logged_models(uri, run_id) -> list[str]:
    """The names of the models the run logged, one entry per model, each READY."""
    client = MlflowClient(uri)
    found = client.search_logged_models([client.get_run(run_id).info.experiment_id],
                                        filter_string=f"source_run_id = '{run_id}'")
    assert {str(model.status) for model in found} <= {"READY"}
    return sorted(model.name for model in found)


def resumed_from(done) -> int:
    return int(re.search(r"^resuming run \w+ \(.*\) from epoch (\d+) of", done.stdout, re.M).group(1))


def test_killed_at_epoch_3_of_8_then_resumed_ends_as_the_run_never_killed(place, reference):
    run_id, _ = place.killed("killed", "Epoch 4/8", *LIMIT, "--epochs", "8")
    assert [step for step, _ in series(place.uri, run_id)][:3] == [0, 1, 2]
    done = place.resume(run_id)
    assert 3 <= resumed_from(done) < 8
    assert done.stdout.splitlines()[1].startswith(f"run {run_id} (early-stopping): 8 epochs, stopped_epoch 7")
    client = MlflowClient(place.uri)
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1  # one run id
    assert [step for step, _ in series(place.uri, run_id)] == list(range(8))  # no gap, no duplicate
    same_run(place.uri, run_id, reference)
    (resume,) = __import__("json").loads(client.get_run(run_id).data.tags["fmtrain.resumes"])
    assert resume["from_epoch"] == resumed_from(done) and resume["why"].startswith("process gone")


def test_early_stopping_killed_after_its_best_epoch_stops_and_restores_as_never_killed(place, early_reference):
    reference = MlflowClient(place.uri).get_run(early_reference).data.metrics
    assert reference["best_epoch"] == 5 and reference["stopped_epoch"] == 7  # the case this test needs
    run_id, _ = place.killed("early-killed", "Epoch 7/30", *LIMIT, *ES)
    done = place.resume(run_id)
    assert 6 <= resumed_from(done) <= 8
    resumed = MlflowClient(place.uri).get_run(run_id).data.metrics
    # The same stopped epoch, and the best epoch's weights restored: the kept model's val loss
    # is the best epoch's, equal to the reference's.
    assert resumed["stopped_epoch"] == 7 and resumed["best_epoch"] == 5
    assert resumed["final_val_loss"] == reference["final_val_loss"] == series(place.uri, run_id)[5][1]
    same_run(place.uri, run_id, early_reference)


def test_killed_mid_epoch_resumes_from_the_last_completed_epoch(place):
    # 9,600 training images: an epoch lasts long enough for the kill to land inside epoch 1.
    run_id, lines = place.killed("mid-epoch", "Epoch 2/3", "--limit", "12000", "--epochs", "3")
    assert lines[-1] == "Epoch 2/3"  # epoch 1 had not ended when the process died
    done = place.resume(run_id)
    assert resumed_from(done) == 1
    assert [step for step, _ in series(place.uri, run_id)] == [0, 1, 2]
    assert MlflowClient(place.uri).get_run(run_id).info.status == "FINISHED"


def _snapshot(uri, run_id):
    run = MlflowClient(uri).get_run(run_id)
    return (run.info.status, run.info.end_time, run.data.params, run.data.metrics, run.data.tags,
            artifacts(uri, run_id))


def test_each_refusal_is_one_line_exit_2_and_leaves_the_run_unchanged(place, reference, tmp_path):
    def refused(run_id, *argv, data_dir=None, cold=False):
        """The refusal's line; the first in a cold process of its own (what a shell sees), the
        others in this process (their words and the unchanged run are what they check)."""
        before = _snapshot(place.uri, run_id)
        resume = ("train", "--resume", run_id, "--quiet", "--data_dir", str(data_dir or place.data_dir), *argv)
        done = place.run(*resume, check=False) if cold else fmtrain_here(resume, env=place.env(), cwd=place.folder)
        assert done.returncode == 2, done.stdout + done.stderr
        line = done.stderr.strip()
        assert "\n" not in line and line.startswith("fmtrain: error: "), done.stderr
        assert _snapshot(place.uri, run_id) == before
        return line

    assert refused(reference, cold=True).endswith("is FINISHED: there is nothing to resume")

    # Killed in its first epoch (20,000 images: before any epoch ended): no state.
    lost, _ = place.killed("lost-early", "Epoch 1/8", "--limit", "20000", "--epochs", "8")
    assert "has no resumable state in its artifacts (resume/)" in refused(lost)
    assert "has epochs=8, not 9: --resume continues the run with its own settings" in refused(lost, "--epochs", "9")
    assert "trained configuration early-stopping, not adam" in refused(lost, "--config", "adam")
    other = make_dataset(tmp_path / "other-data", n_train=25000)
    assert "'s training data has digest" in refused(lost, data_dir=other)

    # RUNNING with a live heartbeat: a training still going.
    job = Process(["fmtrain", "train", "--data_dir", str(place.data_dir), "--experiment", "alive", *LIMIT,
                   "--epochs", "200", "--patience", "none"], env=place.env(), cwd=place.folder)
    try:
        job.expect("Epoch 2/200")
        client = MlflowClient(place.uri)
        (alive,) = client.search_runs([client.get_experiment_by_name("alive").experiment_id])
        before = _snapshot(place.uri, alive.info.run_id)
        done = fmtrain_here(("train", "--resume", alive.info.run_id, "--quiet", "--data_dir", place.data_dir),
                            env=place.env(), cwd=place.folder)
        assert done.returncode == 2 and done.stderr.strip().endswith(
            "is RUNNING and its process shows life (heartbeat within 120 s): stop it, or resume it "
            "once it is stale")
        assert _snapshot(place.uri, alive.info.run_id)[:3] == before[:3]  # still RUNNING, same params
    finally:
        job.signal(signal.SIGKILL)
        job.wait()


def test_mlflow_run_with_resume_continues_the_run_its_killed_command_left(place):
    def project(*parameters):
        return ["mlflow", "run", str(PROJECT), "--env-manager", "local", "--experiment-name", "project",
                "-P", "limit=2000", "-P", "epochs=8", "-P", f"data_dir={place.data_dir}", *parameters]

    job = Process(project(), env=place.env(), cwd=place.folder)
    job.expect("Epoch 4/8")
    (shim,) = [pid for pid in descendants(job.popen.pid)
               if b"train.py" in open(f"/proc/{pid}/cmdline", "rb").read()
               and open(f"/proc/{pid}/comm").read().startswith("python")]
    os.kill(shim, signal.SIGKILL)
    assert job.wait() != 0
    client = MlflowClient(place.uri)
    experiment = client.get_experiment_by_name("project").experiment_id
    (killed,) = client.search_runs([experiment])
    assert killed.info.status == "FAILED" and "fmtrain.error" not in killed.data.tags  # mlflow run's doing
    done = subprocess.run(project("-P", f"resume={killed.info.run_id}"), capture_output=True, text=True,
                          env=place.env(), cwd=place.folder, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = client.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED"
    assert [step for step, _ in series(place.uri, killed.info.run_id)] == list(range(8))
    (marker,) = [r for r in client.search_runs([experiment]) if r.info.run_id != killed.info.run_id]
    assert marker.data.tags["fmtrain.resumed_run_id"] == killed.info.run_id



def test_a_run_killed_while_the_server_was_away_resumes_from_the_state_its_journal_kept(place, reference,
                                                                                       tmp_path):
    servers = restartable_server(tmp_path, signal.SIGKILL)
    uri, start, stop = next(servers)
    try:
        env = {**place.env(), "MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
               "FMTRAIN_STORE_PROBE_SECONDS": "2"}
        job = Process(["fmtrain", "train", "--data_dir", str(place.data_dir), *LIMIT, "--epochs", "8"],
                      env=env, cwd=tmp_path)
        job.expect("Epoch 3/8")
        stop()  # epochs 3 on: their metrics and states wait in the run's journal
        job.expect("Epoch 7/8", timeout=300)
        job.signal(signal.SIGKILL)
        job.wait()
        start()
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("fashion-mnist").experiment_id])
        assert run.info.status == "RUNNING" and (tmp_path / "fmtrain-journal" / run.info.run_id).exists()
        done = fmtrain_here(["train", "--resume", run.info.run_id, "--quiet", "--data_dir", place.data_dir],
                            env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert resumed_from(done) >= 5  # a state the store got from the journal, not one before the outage
        assert [step for step, _ in series(uri, run.info.run_id)] == list(range(8))
        assert [v for _, v in series(uri, run.info.run_id)] == [v for _, v in series(place.uri, reference)]
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(run.info.run_id, "resume")] == []  # removed on the server
    finally:
        next(servers, None)  # the server's own clean-up: its process killed
