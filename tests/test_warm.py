"""The tests' warm start (tests/warm.py) records what a cold start of the same command does."""

import os

import pytest
from mlflow.tracking import MlflowClient
from warm import WarmProcess, run_fmtrain, script_pids, start, warm_eligible

from conftest import all_runs, ray_env

# Tags that name this very process or moment, different between any two runs.
PER_PROCESS = {"fmtrain.process", "fmtrain.process.start", "fmtrain.heartbeat", "fmtrain.host",
               "mlflow.log-model.history"}


def test_a_warm_fmtrain_records_what_a_cold_one_does(store, tiny_data_dir):
    argv = ["train", "--epochs", "2", "--quiet", "--data_dir", str(tiny_data_dir)]
    env = {k: v for k, v in os.environ.items() if k != "FMTRAIN_TEST_COLD"}
    env["MLFLOW_TRACKING_URI"] = store
    warm = run_fmtrain([*argv, "--experiment", "warm"], env=env)
    cold = run_fmtrain([*argv, "--experiment", "cold"], env=dict(env, FMTRAIN_TEST_COLD="1"))
    assert (warm.returncode, cold.returncode) == (0, 0), warm.stderr[-2000:] + cold.stderr[-2000:]
    (warm_run,), (cold_run,) = all_runs("warm"), all_runs("cold")
    assert warm_run.data.params == cold_run.data.params
    assert set(warm_run.data.metrics) == set(cold_run.data.metrics)
    assert {k: v for k, v in warm_run.data.tags.items() if k not in PER_PROCESS} == {
        k: v for k, v in cold_run.data.tags.items() if k not in PER_PROCESS}
    client = MlflowClient()
    assert {a.path for a in client.list_artifacts(warm_run.info.run_id)} == {
        a.path for a in client.list_artifacts(cold_run.info.run_id)}
    assert warm.stdout.replace(warm_run.info.run_id, "RUN").splitlines()[0] == \
        cold.stdout.replace(cold_run.info.run_id, "RUN").splitlines()[0]


def test_a_warm_start_is_a_process_of_its_own_and_cold_where_the_imports_would_differ(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FMTRAIN_TEST_COLD"}  # a warm start, whatever the suite's mode
    process, out, err = start(["fmtrain", "configs"], env=env, cwd=tmp_path)
    assert isinstance(process, WarmProcess) and process.wait(timeout=60) == 0
    assert process.pid != os.getpid() and "early-stopping" in out.read()
    out.close()
    err.close()
    for argv, env in ((["train", "--backend", "jax"], {}), (["sweep", "--seeds", "2"], {}),
                      (["train", "--resume", "x"], {}), (["train"], {"KERAS_BACKEND": "jax"}),
                      (["train"], {"FMTRAIN_DEBUG": "1"}), (["train"], {"FMTRAIN_TEST_COLD": "1"})):
        assert not warm_eligible(argv, env), (argv, env)
    assert not warm_eligible(["train", "--seeds=3"], {})
    assert warm_eligible(["sweep", "--seeds", "2", "--backend=tensorflow"], {})


def test_a_resume_starts_warm_only_for_a_tensorflow_run_of_a_sqlite_store(store):
    client = MlflowClient()
    experiment = client.create_experiment("resumes")
    tensorflow, jax = (client.create_run(experiment).info.run_id for _ in range(2))
    client.log_param(tensorflow, "backend", "tensorflow")
    client.log_param(jax, "backend", "jax")
    env = {"MLFLOW_TRACKING_URI": store}
    assert warm_eligible(["train", "--resume", tensorflow, "--quiet"], env)
    assert warm_eligible(["train", f"--resume={tensorflow}"], env)
    relative = {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}  # the same file, from the working directory
    for argv, where in ((["train", "--resume", jax], env), (["train", f"--resume={jax}"], env),
                        (["train", "--resume", "no-such-run"], env), (["train", "--resume"], env),
                        (["sweep", "--resume", tensorflow], env), (["train", "--resume", tensorflow], {}),
                        (["train", "--resume", tensorflow], relative),
                        (["train", "--resume", tensorflow], {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})):
        assert not warm_eligible(argv, where), (argv, where)


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_warm_command_writes_its_streams_as_a_cold_one(unbuffered, tmp_path):
    done = run_fmtrain(["train", "--patience", "-1"], env=dict(os.environ, PYTHONUNBUFFERED=unbuffered), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("fmtrain: error: ") and done.stderr.count("\n") == 1


def test_a_warm_sweeps_ray_workers_are_forks_of_the_warm_server(store, tiny_data_dir, ray_tmp, tmp_path):
    env = {k: v for k, v in ray_env(store, ray_tmp).items() if k != "FMTRAIN_TEST_COLD"}
    done = run_fmtrain(["sweep", "--configs", "adam,dropout", "--epochs", "1", "--workers", "2", "--quiet",
                        "--data_dir", str(tiny_data_dir)], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "up to 2 at once on a local Ray instance" in done.stdout
    children = [run for run in all_runs() if "mlflow.parentRunId" in run.data.tags]
    assert sorted(run.data.tags["fmtrain.config"] for run in children) == ["adam", "dropout"]
    workers = {int(run.data.tags["fmtrain.process"].rpartition(":")[2]) for run in children}
    assert workers and workers <= script_pids()
