"""A sweep's child whose Ray worker is SIGKILLed goes on, on a live worker, from its last completed
epoch, in the same run; once Ray's retries are spent it fails, and `sweep --resume` finishes it:
it ends as the same child never killed. Real processes, a local Ray."""

import json
import os
import re
import signal

from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main

from conftest import Process, all_runs, curve, ray_env

# 8,000 training images: an epoch lasts long enough for the kill to land while adam trains.
COMMON = ["fmtrain", "sweep", "--configs", "rmsprop-val,adam", "--limit", "10000", "--epochs", "6",
          "--backend", "tensorflow"]


def children(experiment):
    runs = all_runs(experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent, {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}


def test_a_killed_worker_is_retried_by_ray_once_then_its_child_fails_and_sweep_resume_finishes_it(
        store, tmp_path, real_data_dir, ray_tmp):
    """--max_retries 1: adam's worker SIGKILLed (as the out-of-memory killer would) is run again
    by Ray on a live worker, and its child goes on from its last completed epoch in the same run;
    killed again, no retry is left: the child ends FAILED with its reason, the sweep goes on and
    says so. `fmtrain sweep --resume` keeps the FINISHED child and continues the failed one in its
    own run. Both end as the children of the same sweep never killed."""
    data = ["--data_dir", str(real_data_dir)]
    job = Process(COMMON + data + ["--workers", "2", "--max_retries", "1", "--experiment", "killed"],
                  env=ray_env(store, ray_tmp), cwd=tmp_path)
    # Ray prefixes each worker's lines with its task and process: "(adam pid=1234) Epoch 2/6".
    first = int(re.search(r"\(adam pid=(\d+)\) ", job.expect("(adam pid=")).group(1))
    job.expect(f"(adam pid={first}) Epoch 2/6")
    os.kill(first, signal.SIGKILL)
    again = job.expect(" adam: its worker died; Ray runs it again here")  # said by the live worker
    second = int(re.search(r"\(adam pid=(\d+)\) ", again).group(1))
    assert second != first
    job.expect(f"(adam pid={second}) Epoch 4/6")
    os.kill(second, signal.SIGKILL)  # no retry left
    assert job.wait() == 1, "\n".join(job.lines[-20:] + job.err[-20:])
    assert job.last_error_line == "fmtrain: error: 1 configuration(s) failed: adam"
    parent, killed = children("killed")
    adam = killed["adam"]
    assert parent.info.status == "FINISHED" and killed["rmsprop-val"].info.status == "FINISHED"
    assert adam.info.status == "FAILED" and adam.data.tags["fmtrain.end_cause"] == "worker died"
    assert adam.data.tags["fmtrain.error"].startswith("WorkerDied: its Ray worker process died (1 retry spent)")
    assert int(adam.data.tags["fmtrain.process"].rpartition(":")[2]) == second
    (retried,) = json.loads(adam.data.tags["fmtrain.resumes"])
    assert retried["why"].startswith("WorkerDied: its Ray worker died") and retried["from_epoch"] >= 1
    assert any(line.startswith(f"[2/2] adam ... FAILED: run {adam.info.run_id} (adam) killed: WorkerDied")
               for line in job.lines)
    table = MlflowClient().download_artifacts(parent.info.run_id, "sweep-summary.csv", str(tmp_path))
    assert ",FAILED: WorkerDied: its Ray worker process died" in open(table).read()  # the summary says so
    assert parent.data.tags["fmtrain.best_config"] == "rmsprop-val"

    resumed = Process(["fmtrain", "sweep", "--resume", parent.info.run_id, "--workers", "2", "--quiet", *data],
                      env=ray_env(store, ray_tmp), cwd=tmp_path)
    assert resumed.wait(timeout=600) == 0, "\n".join(resumed.err[-20:])
    assert f"[1/2] rmsprop-val ... kept (run {killed['rmsprop-val'].info.run_id} FINISHED)" in resumed.lines
    parent, finished = children("killed")
    assert finished["adam"].info.run_id == adam.info.run_id and finished["adam"].info.status == "FINISHED"
    assert len(json.loads(finished["adam"].data.tags["fmtrain.resumes"])) == 2

    # The same sweep never killed, one child after another in this process (the reference's own
    # process start is not what this test checks).
    assert main(COMMON[1:] + data + ["--workers", "1", "--quiet", "--experiment", "uninterrupted"]) == 0
    _, reference = children("uninterrupted")
    for name in ("adam", "rmsprop-val"):
        assert [step for step, _ in curve(finished[name])] == list(range(6))
        for key in ("loss", "val_loss", "val_accuracy"):
            assert curve(finished[name], key) == curve(reference[name], key), (name, key)
        assert finished[name].data.metrics["final_val_loss"] == reference[name].data.metrics["final_val_loss"]
    table = MlflowClient().download_artifacts(parent.info.run_id, "sweep-summary.csv", str(tmp_path))
    assert open(table).read().count(",FINISHED,") == 2
