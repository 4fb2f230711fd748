"""fmtrain tune: the search space as data; real searches one trial after another in this process
(the fast tier); and a search's command on a local Ray instance, stopped by a real signal (the
process tier)."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from fmtrain.errors import signal_description
from fmtrain.learning import configs
from fmtrain.tuning import space as spaces

from conftest import PROJECT, Process, all_runs, fmtrain_here, processes_mentioning, ray_env, run_fmtrain

SPACE_NAMES = ["learning_rate", "dropout_rate", "units", "batch_size", "optimizer"]


def parent_and_trials(experiment="fashion-mnist"):
    runs = all_runs(experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(trials, key=lambda r: int(r.data.tags["fmtrain.tune.trial"]))


# -- the space ---------------------------------------------------------------------------------

def test_the_default_space_is_the_chapters_knobs():
    space = spaces.load_space()
    assert list(space) == SPACE_NAMES
    assert space["learning_rate"].log and space["units"].whole and space["units"].log
    assert space["batch_size"].choices == (32, 64, 128, 256)
    assert space["optimizer"].choices == ("adam", "rmsprop")
    dists = spaces.optuna_distributions(space)
    assert type(dists["units"]).__name__ == "IntDistribution"
    assert type(dists["learning_rate"]).__name__ == "FloatDistribution" and dists["learning_rate"].log
    assert type(dists["optimizer"]).__name__ == "CategoricalDistribution"
    # Every end of every range is a configuration that trains.
    spaces.check_against(space, configs.resolve("early-stopping"))


def test_a_space_file_in_json_or_yaml(tmp_path):
    data = {"units": {"low": 16, "high": 64}, "optimizer": {"choices": ["adam", "sgd"]}}
    (tmp_path / "space.json").write_text(json.dumps(data))
    (tmp_path / "space.yaml").write_text("units: {low: 16, high: 64}\noptimizer:\n  choices: [adam, sgd]\n")
    from_json, from_yaml = spaces.load_space(tmp_path / "space.json"), spaces.load_space(tmp_path / "space.yaml")
    assert from_json == from_yaml and list(from_json) == ["units", "optimizer"]
    assert spaces.to_data(from_json) == data


@pytest.mark.parametrize("data, message", [
    ({"unit": {"low": 1, "high": 2}}, "unknown setting 'unit'; the settings are: epochs, "),
    ({"seed": {"low": 1, "high": 9}}, "seed is not searched"),
    ({"epochs": {"low": 5, "high": 20}}, "epochs is not searched (it is the trials' shared budget"),
    ({"units": {"low": 64, "high": 32}}, "units needs low < high, got 64 and 32"),
    ({"learning_rate": {"low": 0, "high": 0.1, "log": True}}, "learning_rate on a log scale needs low > 0"),
    ({"units": {"low": 16.5, "high": 32}}, "units must be a whole number, got '16.5'"),
    ({"optimizer": {"choices": []}}, "optimizer's choices must be a non-empty list"),
    ({"optimizer": {"low": 1, "high": 2}}, "optimizer is not a number; give it choices"),
    ({"units": {"low": 16, "high": 32, "step": 2}}, "units has unknown key(s) step"),
    ({"batch_size": {"choices": [32, 32]}}, "batch_size's choices repeat a value"),
    ([1, 2], "must map setting names to ranges"),
])
def test_a_bad_space_is_refused_in_one_line(data, message):
    with pytest.raises(ValueError) as error:
        spaces.parse_space(data)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_range_the_configuration_cannot_train_is_refused():
    space = spaces.parse_space({"dropout_rate": {"low": 0.0, "high": 1.0}})
    with pytest.raises(ValueError, match=r"the search space's dropout_rate range cannot be trained: "
                                         r"dropout_rate must be in \[0, 1\), got 1.0"):
        spaces.check_against(space, configs.resolve("early-stopping"))


def test_show_space_prints_the_space_as_a_table_and_as_json(tmp_path):
    done = run_fmtrain(["tune", "--show-space"], cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == ""
    assert "| units | whole numbers 32 to 512, log scale | 100 |" in done.stdout
    assert "| learning_rate | numbers 0.0001 to 0.01, log scale | Keras's default |" in done.stdout
    shown = json.loads(done.stdout[done.stdout.index("{"):])
    assert spaces.parse_space(shown) == spaces.load_space()
    assert list(tmp_path.iterdir()) == []  # no store opened, nothing written


@pytest.mark.parametrize("args, line", [
    (["--dropout_rate", "0.2"], "fmtrain: error: dropout_rate is searched (see --show-space) and also given "
                                "as a setting; drop the setting, or the range from the space (--space FILE)"),
    (["--space", "missing.json"], "fmtrain: error: cannot read the search space missing.json: "
                                  "No such file or directory"),
    (["--trials", "0"], "fmtrain: error: Invalid value for '--trials': 0 is not in the range x>=1. "
                        "(see `fmtrain tune --help`)"),
    (["--max-concurrent", "1", "--ray-address", "127.0.0.1:6379"],
     "fmtrain: error: --ray_address runs the trials on a Ray cluster, which needs --max-concurrent 2 or more "
     "(--max-concurrent 1 trains them one after another in this process)"),
])
def test_bad_input_gets_one_line_and_no_run(args, line, store, tmp_path):
    done = fmtrain_here(["tune", *args], cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [line]
    assert all_runs() == []


# -- real searches, one trial after another in this process ------------------------------------

def test_a_search_records_every_trial_prunes_and_registers_the_best(store, tmp_path, real_data_dir):
    done = fmtrain_here(["tune", "--trials", "6", "--max-concurrent", "1", "--limit", "1000", "--epochs", "6",
                         "--quiet", "--register_best", "fm-tune", "--data_dir", real_data_dir], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    parent, trials = parent_and_trials()
    parent_id = parent.info.run_id

    # The parent: the space, the settings, the best trial's settings and scores, tables and figures.
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tune"
    assert parent.data.params["trials"] == "6" and parent.data.params["max_concurrent"] == "1"
    assert json.loads(parent.data.params["space"]) == spaces.to_data(spaces.load_space())
    client = MlflowClient()
    assert {a.path for a in client.list_artifacts(parent_id)} == {
        "trials.csv", "trials.md", "space.json", "optimisation-history.png", "param-importance.png"}
    assert "| trial | learning_rate | dropout_rate | units | batch_size | optimizer |" in \
        parent.data.tags["mlflow.note.content"]

    # One child per trial: the run `fmtrain train` makes for its settings, tagged with the search.
    assert len(trials) == 6 and [r.info.run_name for r in trials] == [f"trial-{n:02d}" for n in range(6)]
    for number, run in enumerate(trials):
        assert run.info.status == "FINISHED"
        assert run.data.tags["fmtrain.tune.search"] == parent_id
        assert run.data.tags["fmtrain.tune.trial"] == str(number)
        params = run.data.params
        expected = configs.resolve("early-stopping", {name: params[name] for name in
                                                      ["limit", "epochs", *SPACE_NAMES]}).to_params()
        assert set(params) == set(expected) | {"config", "data_source", "train_size", "val_size"}
        assert {key: params[key] for key in expected} == expected
        space = spaces.load_space()
        assert space["learning_rate"].low <= float(params["learning_rate"]) <= space["learning_rate"].high
        assert 32 <= int(params["units"]) <= 512 and params["optimizer"] in ("adam", "rmsprop")
        assert {"model-whole.keras", "history.csv", "loss-curve.png"} <= \
            {a.path for a in client.list_artifacts(run.info.run_id)}
    pruned = [r for r in trials if r.data.tags.get("fmtrain.tune.pruned") == "true"]
    complete = [r for r in trials if "fmtrain.tune.pruned" not in r.data.tags]
    assert pruned and complete
    for run in pruned:  # finished at the epoch the pruner stopped it, with its curves so far
        epoch = int(run.data.tags["fmtrain.tune.pruned_epoch"])
        assert run.data.tags["fmtrain.tune.stopped_by"] == "pruned"
        assert run.data.metrics["stopped_epoch"] == epoch and run.data.metrics["epochs_run"] == epoch + 1
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == epoch + 1
        assert re.search(rf"\] {run.info.run_name} \(.*\) \.\.\. pruned after epoch {epoch} ", done.stdout)
    # The best complete trial is the parent's best, registered with alias champion and loadable.
    best = min(complete, key=lambda r: r.data.metrics["final_val_loss"])
    assert parent.data.tags["fmtrain.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_final_val_loss"] == best.data.metrics["final_val_loss"]
    assert parent.data.metrics["trials_pruned"] == len(pruned)
    assert parent.data.params["best_units"] == best.data.params["units"]
    assert client.get_model_version_by_alias("fm-tune", "champion").run_id == best.info.run_id
    assert "registered as fm-tune version 1, alias champion" in done.stdout
    evaluated = fmtrain_here(["evaluate", "--model_uri", "models:/fm-tune@champion", "--data_dir", real_data_dir],
                             cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "evaluated models:/fm-tune@champion (fm-tune version 1) on 10000 test images" in evaluated.stdout
    # The study lives in the store, in an experiment of its own beside the search's.
    assert client.get_experiment_by_name("fashion-mnist (Optuna studies)") is not None
    assert {r.info.experiment_id for r in trials} == {parent.info.experiment_id}


def test_the_same_seed_repeats_the_search(store, tmp_path, real_data_dir):
    """Once with `fmtrain tune`, once with `mlflow run . -e tune` (its parent is mlflow run's run)."""
    small = ["--limit", "500", "--epochs", "2", "--data_dir", str(real_data_dir)]
    done = fmtrain_here(["tune", "--trials", "2", "--max-concurrent", "1", "--seed", "7", "--quiet",
                         "--experiment", "first", *small], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    project = subprocess.run(
        ["mlflow", "run", str(PROJECT), "-e", "tune", "--env-manager", "local", "--experiment-name", "second",
         "-P", "trials=2", "-P", "seed=7", "-P", "max_concurrent=1", "-P", "limit=500", "-P", "epochs=2",
         "-P", f"data_dir={real_data_dir}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert project.returncode == 0, project.stdout[-3000:] + project.stderr[-3000:]
    found = {}
    for experiment in ("first", "second"):
        parent, trials = parent_and_trials(experiment)
        assert parent.data.params["seed"] == "7" and {r.data.params["seed"] for r in trials} == {"7"}
        found[experiment] = [({name: r.data.params[name] for name in SPACE_NAMES},
                              r.data.metrics["final_val_loss"]) for r in trials]
    assert found["first"] == found["second"]  # the same settings, trial by trial, and the same losses
    assert len({json.dumps(settings) for settings, _ in found["first"]}) == 2

    # A trial trains exactly as `fmtrain train` does alone with its settings.
    _, trials = parent_and_trials("first")
    chosen = [part for name in SPACE_NAMES for part in (f"--{name}", trials[1].data.params[name])]
    assert fmtrain_here(["train", "--backend", "tensorflow", "--seed", "7", "--quiet", "--experiment", "alone",
                         *chosen, *small], cwd=tmp_path).returncode == 0
    (reference,) = all_runs("alone")
    assert trials[1].data.params == reference.data.params
    for key in ("final_val_loss", "final_val_accuracy", "stopped_epoch"):
        assert trials[1].data.metrics[key] == reference.data.metrics[key], key


def test_failed_trials_are_isolated_and_the_time_budget_stops_the_rest(store, tmp_path, real_data_dir):
    # SGD at learning rate 1e12 turns the loss into NaN in the first epoch; 0.01 trains on.
    (tmp_path / "space.json").write_text(json.dumps({"learning_rate": {"choices": [0.01, 1e12]}}))
    done = fmtrain_here(["tune", "--space", "space.json", "--optimizer", "sgd", "--trials", "4",
                         "--max-concurrent", "1", "--time_budget", "20", "--limit", "1000", "--epochs", "5000",
                         "--patience", "none", "--quiet", "--register_best", "fm-none", "--data_dir", real_data_dir],
                        cwd=tmp_path)
    parent, trials = parent_and_trials()
    failed = [r for r in trials if r.info.status == "FAILED"]
    budget = [r for r in trials if r.data.tags.get("fmtrain.tune.stopped_by") == "time budget"]
    assert failed and budget, done.stdout[-3000:] + done.stderr[-3000:]
    for run in failed:
        assert run.data.params["learning_rate"] == "1000000000000.0"
        assert run.data.tags["fmtrain.error"].startswith("TrainingDiverged: the training loss became nan")
    for run in budget:  # stopped at an epoch's end by the budget, FINISHED with its curves so far
        assert run.info.status == "FINISHED" and run.data.params["learning_rate"] == "0.01"
        assert run.data.metrics["epochs_run"] < 5000
        assert re.search(rf"\] {run.info.run_name} \(learning_rate 0.01\) \.\.\. stopped by the time budget",
                         done.stdout)
        assert len(MlflowClient().get_metric_history(run.info.run_id, "val_loss")) == run.data.metrics["epochs_run"]
    assert {r.info.status for r in trials} <= {"FINISHED", "FAILED"}
    assert parent.info.status == "FINISHED" and "fmtrain.best_run_id" not in parent.data.tags
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-2:] == [
        f"fmtrain: error: {len(failed)} trial(s) failed: " + ", ".join(r.info.run_name for r in failed),
        "fmtrain: error: no trial ran to its end, so nothing was registered as fm-none; run more trials "
        "or give a longer --time_budget"]
    assert "best: none (no trial ran to its end)" in done.stdout
    assert MlflowClient().search_registered_models() == []


# -- the process tier: a search's command with its Ray workers, signalled and killed ----------

def test_ctrl_c_to_a_search_ends_the_parent_and_its_trials(store, tmp_path, real_data_dir, ray_tmp):
    """Ctrl-C to the search's process group, its Ray workers included (SIGTERM to a search:
    tests/test_record.py)."""
    signum, status, code = signal.SIGINT, "FAILED", 130
    job = Process(["fmtrain", "tune", "--trials", "4", "--max-concurrent", "2", "--limit", "1000", "--epochs",
                   "100", "--patience", "none", "--data_dir", str(real_data_dir)],
                  env=ray_env(store, ray_tmp), cwd=tmp_path)
    training = set()
    while len(training) < 2:  # two trials are in fit(), each in its own worker
        training.add(re.search(r"\(\S+ pid=(\d+)\) Epoch 2/100", job.expect(") Epoch 2/100")).group(1))
    job.signal_group(signum)  # Ctrl-C: the terminal's whole group, Ray's workers included
    assert job.wait() == code, "\n".join(job.err[-20:])
    parent, trials = parent_and_trials()
    assert len(trials) == 2
    reason = signal_description(signum)
    for run in (parent, *trials):
        assert run.info.status == status and run.data.tags["fmtrain.error"] == reason
    assert job.last_error_line.startswith(f"fmtrain: run {parent.info.run_id} (tune) {reason}; ")
    assert job.last_error_line.endswith("no run was left RUNNING")
    assert "Traceback" not in "\n".join(job.err)
    deadline = time.monotonic() + 60
    while processes_mentioning(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)  # polling the process table for Ray's own exit, not a synchronisation delay
    assert processes_mentioning(ray_tmp) == []
