"""A sweep's child whose Ray worker is SIGKILLed goes on, on a live worker, from its last completed
epoch, in the same run: it ends as the same child never killed. Real processes, a local Ray."""

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


def test_a_child_whose_worker_is_killed_resumes_on_a_live_worker_as_never_killed(store, tmp_path, real_data_dir,
                                                                                ray_tmp):
    data = ["--data_dir", str(real_data_dir)]
    job = Process(COMMON + data + ["--workers", "2", "--experiment", "killed"], env=ray_env(store, ray_tmp),
                  cwd=tmp_path)
    # Ray prefixes each worker's lines with its task and process: "(adam pid=1234) Epoch 2/6".
    worker = int(re.search(r"\(adam pid=(\d+)\) ", job.expect("(adam pid=")).group(1))
    job.expect(f"(adam pid={worker}) Epoch 2/6")
    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer would
    assert job.wait() == 0, "\n".join(job.lines[-20:] + job.err[-20:])
    # The job, run again by Ray on a live worker, says so in that worker's lines.
    assert any(line.startswith("(adam pid=") and " adam: its worker died; Ray runs it again here" in line
               for line in job.lines), job.lines[-20:]
    parent, killed = children("killed")
    assert parent.info.status == "FINISHED" and len(killed) == 2
    adam = killed["adam"]
    assert adam.info.status == "FINISHED" and "fmtrain.error" not in adam.data.tags
    (resume,) = json.loads(adam.data.tags["fmtrain.resumes"])
    assert resume["why"].startswith("WorkerDied: its Ray worker died") and resume["from_epoch"] >= 1
    assert int(adam.data.tags["fmtrain.process"].rpartition(":")[2]) != worker  # a live worker finished it

    # The same sweep never killed, one child after another in this process (the reference's own
    # process start is not what this test checks).
    assert main(COMMON[1:] + data + ["--workers", "1", "--quiet", "--experiment", "uninterrupted"]) == 0
    _, reference = children("uninterrupted")
    for name in ("adam", "rmsprop-val"):
        assert [step for step, _ in curve(killed[name])] == list(range(6))
        for key in ("loss", "val_loss", "val_accuracy"):
            assert curve(killed[name], key) == curve(reference[name], key), (name, key)
        assert killed[name].data.metrics["final_val_loss"] == reference[name].data.metrics["final_val_loss"]
    # The comparison is complete: a row for each child, both FINISHED.
    table = MlflowClient().download_artifacts(parent.info.run_id, "sweep-summary.csv", str(tmp_path))
    assert open(table).read().count(",FINISHED,") == 2
