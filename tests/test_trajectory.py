"""Shared epochs (learning/trajectory.py): a follower that replays its leader's epochs ends
exactly where the same configuration trained alone ends, on both backends; a sweep that shares
epochs makes the same runs as one that does not. Real Keras training on a real subset."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from fmtrain.learning import configs, trajectory

from conftest import all_runs

SCRIPT = r"""
import json, sys, tempfile
from fmtrain.learning import backend
backend.use(sys.argv[1])
import numpy as np
from fmtrain.learning import configs, data, training, trajectory

# A learning rate that makes val_loss turn up within a few epochs, so that EarlyStopping stops.
settings = {"epochs": 8, "limit": 2000, "learning_rate": 0.01, "backend": sys.argv[1]}
chosen = {"dropout": {}, "save-restore": {"epochs": 4}, "checkpoint": {}, "early-stopping": {"patience": 1}}
cfgs = {name: configs.resolve(name, {**settings, **extra}) for name, extra in chosen.items()}
splits = data.load_splits(sys.argv[2], 2000)

def summary(result):
    return {"history": result.history, "stopped": result.stopped_epoch, "best": result.best_epoch,
            "kept": result.kept_epoch,
            "metrics": {k: v for k, v in result.metrics.items() if "seconds" not in k},
            "weights": [w.tolist() for w in result.model.get_weights()]}

out = {"alone": {}, "together": {}}
for name, config in cfgs.items():
    with tempfile.TemporaryDirectory() as folder:
        out["alone"][name] = summary(training.train(config, splits, folder))
recorded = trajectory.Trajectory()
with tempfile.TemporaryDirectory() as folder:
    out["together"]["dropout"] = summary(training.train(cfgs["dropout"], splits, folder, record=recorded))
for name in ("save-restore", "checkpoint", "early-stopping"):
    with tempfile.TemporaryDirectory() as folder:
        out["together"][name] = summary(training.train(cfgs[name], splits, folder, replaying=recorded))
out["recorded_seconds"] = recorded.epoch_seconds
print("RESULT" + json.dumps(out))
"""


def test_families_group_what_trains_the_same_weights():
    early = configs.resolve("early-stopping", {"seed": 7})
    assert trajectory.follows(configs.resolve("dropout", {"seed": 7}), early)
    assert trajectory.follows(configs.resolve("checkpoint"), configs.resolve("save-restore"))
    assert trajectory.follows(configs.resolve("rmsprop-val"), configs.resolve("rmsprop-5"))
    # A leader must run all its epochs, validate for a follower that validates, and share the seed
    # and every setting that changes a weight.
    assert not trajectory.follows(early, configs.resolve("dropout", {"seed": 7}))
    assert not trajectory.follows(configs.resolve("rmsprop-20"), configs.resolve("rmsprop-val"))
    assert not trajectory.follows(configs.resolve("dropout"), configs.resolve("early-stopping", {"seed": 7}))
    assert not trajectory.follows(configs.resolve("adam"), configs.resolve("dropout"))
    assert not trajectory.follows(configs.resolve("save-restore"), configs.resolve("checkpoint"))
    assert trajectory.family(dataclasses.replace(early, epochs=3)) == trajectory.family(early)


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_follower_ends_exactly_where_it_would_alone(backend, real_data_dir):
    done = subprocess.run([sys.executable, "-c", SCRIPT, backend, str(real_data_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    out = json.loads(done.stdout.split("RESULT", 1)[1])
    for name, alone in out["alone"].items():
        # Every epoch's metrics, the stopped and best epochs, the test metrics, the reload checks,
        # the best checkpoint's scores and the final weights: equal, bit for bit.
        assert out["together"][name] == alone, name
    early = out["alone"]["early-stopping"]
    assert early["stopped"] < 7 and early["kept"] == early["best"] < early["stopped"]  # it did stop early
    assert len(out["alone"]["save-restore"]["history"]["loss"]) == 4
    assert "best_checkpoint_val_loss" in out["together"]["checkpoint"]["metrics"]
    assert len(out["recorded_seconds"]) == 8 and all(s > 0 for s in out["recorded_seconds"])


def test_a_sweep_that_shares_epochs_makes_the_same_runs(store, real_data_dir):
    common = ["fmtrain", "sweep", "--configs", "dropout,save-restore,early-stopping",
              "--seeds", "2", "--limit", "1000", "--epochs", "4", "--workers", "1", "--quiet",
              "--data_dir", str(real_data_dir)]
    results = {}
    for share in ("--share_epochs", "--no-share_epochs"):
        done = subprocess.run(common + [share, "--experiment", share], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        runs = all_runs(share)
        parent = next(run for run in runs if "fmtrain.sweep.configs" in run.data.tags)
        children = [run for run in runs if run is not parent]
        assert parent.data.params["share_epochs"] == ("true" if share == "--share_epochs" else "false")
        assert {run.info.status for run in children} == {"FINISHED"} and len(children) == 6
        leaders = {run.info.run_id: run.info.run_name for run in children
                   if "fmtrain.epochs_from" not in run.data.tags}
        if share == "--share_epochs":
            assert "shared epochs: 6 runs from 2 fits" in done.stdout
            assert sorted(leaders.values()) == ["dropout/seed-42", "dropout/seed-43"]
            for run in children:  # each follower names its own seed's leader
                if run.info.run_id not in leaders:
                    assert leaders[run.data.tags["fmtrain.epochs_from"]].endswith(run.data.params["seed"])
        else:
            assert len(leaders) == 6 and "shared epochs" not in done.stdout
        results[share] = {run.info.run_name: (
            {k: v for k, v in run.data.metrics.items() if "seconds" not in k and not k.startswith("system/")},
            {k: v for k, v in run.data.params.items()},
            sorted(a.path for a in _artifacts(run.info.run_id))) for run in children}
    assert results["--share_epochs"] == results["--no-share_epochs"]
    assert np.isfinite([m["final_val_loss"] for m, _, _ in results["--share_epochs"].values()]).all()


def _artifacts(run_id):
    from mlflow.tracking import MlflowClient

    return MlflowClient().list_artifacts(run_id)
