"""Parallel sweeps on a local Ray instance, into a sqlite store the workers share: the same runs as
a sequential sweep, a worker that dies, a signal to the driver. Real processes and signals."""

import os
import re
import signal
import time

from mlflow.tracking import MlflowClient

from conftest import Process, all_runs, fmtrain_here, processes_mentioning, ray_env, run_fmtrain


def parent_and_children(experiment="fashion-mnist"):
    runs = all_runs(experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def pid_of(run) -> int:
    return int(run.data.tags["fmtrain.process"].rpartition(":")[2])


def curves(run) -> dict:
    client = MlflowClient()
    return {key: [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
            for key in ("loss", "val_loss")}


def test_two_workers_train_the_same_runs_as_one(store, tmp_path, real_data_dir, ray_tmp):
    # TensorFlow, named: several seeds would default to JAX, and this equality is TensorFlow's.
    common = ["fmtrain", "sweep", "--configs", "rmsprop-val,adam", "--seeds", "2", "--limit", "500",
              "--epochs", "2", "--quiet", "--data_dir", str(real_data_dir), "--backend", "tensorflow"]
    results = {}
    for workers in ("1", "2"):
        argv = common + ["--workers", workers, "--experiment", f"workers-{workers}"]
        if workers == "1":  # every child in the command's own process: here, this one (fmtrain_here)
            done = fmtrain_here(argv[1:], env=ray_env(store, ray_tmp), cwd=tmp_path)
        else:
            done = run_fmtrain(argv[1:], env=ray_env(store, ray_tmp), cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        parent, children = parent_and_children(f"workers-{workers}")
        assert parent.info.status == "FINISHED" and parent.data.params["workers"] == workers
        assert sorted(c.info.run_name for c in children) == ["adam/seed-42", "adam/seed-43",
                                                              "rmsprop-val/seed-42", "rmsprop-val/seed-43"]
        assert {c.info.status for c in children} == {"FINISHED"}
        assert {c.info.experiment_id for c in children} == {parent.info.experiment_id}
        results[workers] = {c.info.run_name: (curves(c), c.data.metrics["final_val_loss"], c.data.params)
                            for c in children}
        pids = {pid_of(c) for c in children}
        if workers == "1":  # today's sweep: every child in the command's own process
            assert pids == {pid_of(parent)} and "training 4 runs" not in done.stdout
        else:  # each child in a Ray worker process, two of them, none the driver
            assert len(pids) == 2 and pid_of(parent) not in pids
            # Each worker kept to a core of its own while it trained (engines.pin).
            cores = [c.data.tags["fmtrain.process.cores"] for c in children]
            assert all("," not in core for core in cores)
            assert len(set(cores)) == min(2, len(os.sched_getaffinity(0)))
            assert ("training 4 runs up to 2 at once on a local Ray instance, each in its own worker "
                    "process with 1 thread") in done.stdout
            assert "chapter report logged on run" in done.stdout
    # Seeded results do not depend on the number of workers: every loss, epoch by epoch, bit for bit.
    assert results["1"] == results["2"]
    assert processes_mentioning(ray_tmp) == []  # the local Ray instance ended with the sweep


# A child whose worker dies, retried by Ray, then with no retry left: tests/test_resume_sweeps.py.


def test_sigterm_to_a_parallel_sweep_ends_parent_and_children_killed(store, tmp_path, real_data_dir, ray_tmp):
    temp = tmp_path / "tmp"
    temp.mkdir()
    job = Process(["fmtrain", "sweep", "--configs", "rmsprop-val,adam", "--limit", "1000", "--epochs", "100",
                   "--patience", "none", "--workers", "2", "--data_dir", str(real_data_dir)],
                  env=ray_env(store, ray_tmp, TMPDIR=str(temp)), cwd=tmp_path)
    training = set()
    while training != {"rmsprop-val", "adam"}:  # both children are in fit()
        training.add(re.search(r"\((\S+) pid=\d+\) Epoch 2/100", job.expect(") Epoch 2/100")).group(1))
    job.signal(signal.SIGTERM)
    assert job.wait() == 143, "\n".join(job.err[-20:])
    parent, children = parent_and_children()
    assert len(children) == 2
    for run in (parent, *children):
        assert run.info.status == "KILLED" and run.data.tags["fmtrain.error"] == "killed by SIGTERM"
    line = job.last_error_line
    assert line.startswith(f"fmtrain: run {parent.info.run_id} (sweep) killed by SIGTERM; run ")
    assert line.endswith("killed by SIGTERM; no run was left RUNNING")
    assert all(f"run {c.info.run_id} ({c.info.run_name})" in line for c in children)
    # The workers stopped at the end of a step, ended their runs and removed their folders;
    # then the local Ray instance went with the driver.
    assert list(temp.glob("fmtrain-*")) == []
    deadline = time.monotonic() + 60
    while processes_mentioning(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)  # polling the process table for Ray's own exit, not a synchronisation delay
    assert processes_mentioning(ray_tmp) == []
