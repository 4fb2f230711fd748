"""Sweeps on a small real subset: nested runs, comparison, best child, failures, Ctrl-C."""

import csv
import io
import os
import signal
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main
from fmtrain.learning import configs

from conftest import PROJECT, Process, all_runs


def by_parent(runs):
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], sorted(children, key=lambda r: r.info.start_time)


def test_sweep_entry_point_nests_children_compares_and_registers_the_best(store, tmp_path, real_data_dir):
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    done = subprocess.run(
        ["mlflow", "run", str(PROJECT), "-e", "sweep", "--env-manager", "local",
         "--experiment-name", "fashion-mnist", "-P", "configs=rmsprop-val,dropout,early-stopping",
         "-P", "epochs=3", "-P", "limit=1000", "-P", f"data_dir={real_data_dir}", "-P", "register_best=fm",
         "-P", "workers=1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[2/3] dropout ... val_loss" in done.stdout and "| config | seed | status |" in done.stdout

    parent, children = by_parent(all_runs())
    assert [c.info.run_name for c in children] == ["rmsprop-val", "dropout", "early-stopping"]
    assert parent.data.tags["fmtrain.sweep.configs"] == "rmsprop-val,dropout,early-stopping"
    assert all(c.info.status == "FINISHED" for c in children) and parent.info.status == "FINISHED"
    ours = set(configs.DEFAULT.to_params()) | {"config", "data_source", "train_size", "val_size"}
    assert all(ours <= set(c.data.params) for c in children)
    keys = [set(c.data.params) for c in children]  # the params line up key for key
    assert keys[0] == keys[1] == keys[2] == ours
    assert [c.data.params["epochs"] for c in children] == ["3", "3", "3"]
    assert {c.data.params["train_size"] for c in children} == {"1000"}

    client = MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep-val-loss.png", "sweep-summary.csv", "sweep-summary.md"} <= artifacts
    table = list(csv.DictReader(io.StringIO(
        open(client.download_artifacts(parent.info.run_id, "sweep-summary.csv", str(tmp_path))).read())))
    assert [row["config"] for row in table] == ["rmsprop-val", "dropout", "early-stopping"]
    for row, child in zip(table, children, strict=True):
        assert row["run_id"] == child.info.run_id
        assert float(row["final_val_loss"]) == pytest.approx(child.data.metrics["final_val_loss"])
        assert float(row["reload_val_accuracy"]) == child.data.metrics["reload_whole_val_accuracy"]
    best = min(children, key=lambda c: c.data.metrics["final_val_loss"])
    assert parent.data.tags["fmtrain.best_run_id"] == best.info.run_id
    champion = client.get_model_version_by_alias("fm", "champion")
    assert str(champion.version) == "1" and champion.run_id == best.info.run_id

    # `fmtrain compare` rebuilds the same table from the store alone, and logs nothing new.
    out_dir = tmp_path / "cmp"
    assert main(["compare", parent.info.run_id, "--output", str(out_dir)]) == 0
    rebuilt = list(csv.DictReader(io.StringIO((out_dir / "sweep-summary.csv").read_text())))
    assert [r["final_val_loss"] for r in rebuilt] == [r["final_val_loss"] for r in table]
    assert (out_dir / "sweep-val-loss.png").stat().st_size > 10_000
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == artifacts
    assert main(["compare", parent.info.run_id, "--output", str(tmp_path / "again"), "--log"]) == 0
    assert client.get_run(parent.info.run_id).data.tags["fmtrain.best_run_id"] == best.info.run_id
    two = [c.info.run_id for c in children[:2]]
    assert main(["compare", *two, "--output", str(tmp_path / "two")]) == 0
    assert len((tmp_path / "two" / "sweep-summary.csv").read_text().splitlines()) == 3


def test_a_failing_configuration_fails_alone(store, real_data_dir, capsys):
    # patience needs validation: rmsprop-5 cannot take it, the others can.
    code = main(["sweep", "--configs", "rmsprop-5,adam", "--epochs", "2", "--patience", "1",
                 "--limit", "500", "--data_dir", str(real_data_dir), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and "1 configuration(s) failed: rmsprop-5" in captured.err
    assert "[1/2] rmsprop-5 ... FAILED: early stopping (patience) needs validation=true" in captured.out
    parent, (failed, adam) = by_parent(all_runs())
    assert failed.info.status == "FAILED" and "needs validation=true" in failed.data.tags["fmtrain.error"]
    assert adam.info.status == "FINISHED" and parent.info.status == "FINISHED"
    assert "| rmsprop-5 | 42 | FAILED: ValueError: early stopping" in captured.out
    assert parent.data.tags["fmtrain.best_config"] == "adam"


def test_a_configuration_failing_while_training_fails_alone(store, real_data_dir, monkeypatch, capsys):
    from fmtrain.learning import training

    real_train = training.train

    def train_or_break(config, *args, **kwargs):
        if config.optimizer == "rmsprop":
            raise RuntimeError("simulated out of memory")
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(training, "train", train_or_break)
    code = main(["sweep", "--configs", "rmsprop-val,adam", "--epochs", "1", "--limit", "500",
                 "--data_dir", str(real_data_dir), "--quiet", "--workers", "1"])  # the patch is in this process
    captured = capsys.readouterr()
    assert code == 1 and "[1/2] rmsprop-val ... FAILED: run " in captured.out
    parent, (failed, adam) = by_parent(all_runs())
    assert failed.info.status == "FAILED" and failed.data.tags["fmtrain.error"] == "RuntimeError: simulated out of memory"
    assert adam.info.status == "FINISHED" and parent.info.status == "FINISHED"
    assert "| rmsprop-val | 42 | FAILED: RuntimeError: simulated out of memory |" in captured.out
    assert "| adam | 42 | FINISHED |" in captured.out


def test_ctrl_c_leaves_no_run_running(store, tmp_path, real_data_dir):
    import mlflow

    mlflow.set_experiment("fashion-mnist")  # create the store's tables before two processes share it
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, PYTHONUNBUFFERED="1")
    job = Process(["fmtrain", "sweep", "--configs", "rmsprop-20,adam", "--limit", "2000", "--epochs", "50",
                   "--workers", "1", "--data_dir", str(real_data_dir)], env=env, cwd=tmp_path)
    job.expect("Epoch 1/50")  # Keras announces it once the first child is training
    job.signal(signal.SIGINT)
    assert job.wait(timeout=120) == 130, "\n".join(job.err[-20:])
    assert "interrupted (Ctrl-C); no run was left RUNNING" in job.last_error_line
    runs = all_runs()
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FAILED"}
    assert {r.data.tags.get("fmtrain.error") for r in runs} == {"interrupted (Ctrl-C)"}
