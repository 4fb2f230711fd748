"""Training without MLflow, on small data: reload checks, epochs, determinism, speed-ups."""

import keras
import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from fmtrain.learning import batches, configs, data, training


@pytest.fixture(scope="module")
def splits(tiny_data_dir):
    return data.load_splits(tiny_data_dir)


def test_reload_checks_equal_the_model_in_memory(splits, tmp_path):
    result = training.train(configs.resolve("checkpoint", {"epochs": "3"}), splits, tmp_path)
    metrics = result.metrics
    assert metrics["reload_weights_val_accuracy"] == metrics["model_val_accuracy"] == metrics["reload_whole_val_accuracy"]
    assert metrics["reload_checks_passed"] == 1.0
    assert {p.name for p in tmp_path.iterdir()} == {"model-whole.keras", "model.weights.h5", "best-model.keras"}
    best_val = min(result.history["val_loss"])
    assert metrics["best_checkpoint_val_loss"] == pytest.approx(best_val, rel=1e-5)
    assert result.stopped_epoch == 2 and result.best_epoch == int(np.argmin(result.history["val_loss"]))
    assert len(result.epoch_seconds) == 3 and not result.early_stopped
    assert result.kept_epoch == 2  # no EarlyStopping: the last epoch's weights


def test_early_stopping_restores_the_best_epoch(splits, tmp_path):
    config = configs.resolve("early-stopping", {"epochs": "40", "patience": "0", "learning_rate": "0.05"})
    result = training.train(config, splits, tmp_path)
    val_loss = result.history["val_loss"]
    assert result.early_stopped and result.stopped_epoch == len(val_loss) - 1 < 39
    assert result.best_epoch == int(np.argmin(val_loss))
    assert result.metrics["final_val_loss"] == pytest.approx(val_loss[result.best_epoch], rel=1e-4)
    assert result.kept_epoch == result.best_epoch


def test_no_validation_keeps_no_checkpoint_and_still_checks_reloads(splits, tmp_path):
    result = training.train(configs.resolve("rmsprop-5", {"epochs": "2"}), splits, tmp_path)
    assert set(result.history) == {"loss", "accuracy"}
    assert "best_checkpoint_val_loss" not in result.metrics and "best_checkpoint" not in result.files
    assert result.metrics["reload_checks_passed"] == 1.0
    assert result.best_epoch == int(np.argmin(result.history["loss"]))


def test_same_configuration_and_seed_give_the_same_epochs(splits, tmp_path):
    config = configs.resolve("dropout", {"epochs": "3"})
    first = training.train(config, splits, tmp_path)
    second = training.train(config, splits, tmp_path)
    assert first.history == second.history
    other = training.train(configs.resolve("dropout", {"epochs": "3", "seed": "7"}), splits, tmp_path)
    assert other.history != first.history


def test_speed_ups_leave_the_mathematics_unchanged(tiny_data_dir, tmp_path):
    """fmtrain (uint8 images scaled per batch, 500 steps per call) against the chapter's plain
    code (float64 / 255.0 from train_test_split, one step per call) fed the same batch order,
    fmtrain's (each epoch's permutation from seed and epoch, ``shuffle=False``): same losses."""
    arrays, _ = data.load_raw(tiny_data_dir)
    x_train, x_val, y_train, y_val = train_test_split(
        arrays["train_images"] / 255.0, arrays["train_labels"], test_size=0.2, random_state=42)
    config = configs.resolve("dropout", {"epochs": "3"})
    keras.utils.set_random_seed(config.seed)
    plain = _chapter_model_fn()(keras.layers.Dropout(0.3))
    plain.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    chapter = {}
    for epoch in range(3):  # one fit() per epoch, on the epoch's order: the optimizer carries on
        order = batches.epoch_order(config.seed, epoch, len(y_train))
        history = plain.fit(x_train[order], y_train[order], epochs=epoch + 1, initial_epoch=epoch,
                            shuffle=False, verbose=0, validation_data=(x_val, y_val)).history
        for key, values in history.items():
            chapter.setdefault(key, []).extend(values)

    fast = training.train(config, data.load_splits(tiny_data_dir), tmp_path).history
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(fast[key], chapter[key], rtol=1e-5, atol=1e-6, err_msg=key)


def _chapter_model_fn():
    """The chapter's own model_fn, as the benchmark runs it."""
    import importlib.util

    from conftest import PROJECT

    spec = importlib.util.spec_from_file_location("chapter_plain", PROJECT / "benchmarks" / "chapter_plain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.model_fn
