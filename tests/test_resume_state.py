"""The resumable state without MLflow, on tiny data: continued from every epoch boundary, a
training ends exactly as the training never interrupted (EarlyStopping's stop and restored
weights, the checkpoint, Dropout's masks); a state file cut short is passed over."""

import copy

import numpy as np
import pytest

from fmtrain.learning import configs, data, resumption, training
from fmtrain.learning.training_state import STATE_FILES, TrainingState


@pytest.fixture(scope="module")
def splits(tiny_data_dir):
    return data.load_splits(tiny_data_dir)


def train_keeping_states(config, splits, folder, state=None):
    """Train ``config`` (from ``state``, if any), keeping a copy of each epoch's state."""
    kept = []
    saving = resumption.Resumption(folder / "resume", lambda files: kept.append(
        TrainingState.load(files[0])), state, config.seed, config.to_params())
    result = training.train(config, splits, folder, resumption=saving)
    return result, kept


def same_result(a, b):
    assert a.history == b.history
    assert (a.stopped_epoch, a.best_epoch, a.kept_epoch, a.early_stopped) == \
        (b.stopped_epoch, b.best_epoch, b.kept_epoch, b.early_stopped)
    assert len(a.epoch_seconds) == len(b.epoch_seconds)
    timings = ("fit_seconds", "seconds_per_epoch")
    assert {k: v for k, v in a.metrics.items() if k not in timings} == \
        {k: v for k, v in b.metrics.items() if k not in timings}
    for left, right in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


# EarlyStopping that stops this tiny run early (with Dropout, a checkpoint and Adam's moments).
STOPPING = {"epochs": "40", "patience": "1", "learning_rate": "0.05"}


def test_continued_from_every_epoch_boundary_a_training_ends_as_never_interrupted(splits, tmp_path):
    config = configs.resolve("early-stopping", STOPPING)
    whole, states = train_keeping_states(config, splits, tmp_path / "whole")
    assert whole.early_stopped and config.dropout_rate > 0 and len(states) == whole.stopped_epoch + 1
    assert states[-1].stopped and states[-1].early_stopping["stopped_epoch"] == whole.stopped_epoch
    for index, state in enumerate(states):  # the last one: stopped, no epoch left to train
        resumed, _ = train_keeping_states(config, splits, tmp_path / f"from-{index}", copy.deepcopy(state))
        same_result(resumed, whole)
        assert (tmp_path / f"from-{index}" / "best-model.keras").exists()
        assert resumed.metrics["best_checkpoint_val_loss"] == whole.metrics["best_checkpoint_val_loss"]


def test_a_state_file_cut_short_is_passed_over_for_the_other_one(splits, tmp_path):
    config = configs.resolve("dropout", {"epochs": "3"})
    _, states = train_keeping_states(config, splits, tmp_path)
    folder = tmp_path / "resume"
    assert sorted(p.name for p in folder.glob("state-*.npz")) == sorted(STATE_FILES)
    assert TrainingState.latest(folder).epoch == 3
    newest = folder / STATE_FILES[3 % 2]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # killed while writing it
    assert TrainingState.latest(folder).epoch == 2
