"""The chapter's plain Keras code, timed: no tracking, verbose=0, one step per call.

Runs one or more of fmtrain's configurations the way the chapter's notebook does (float64
``/ 255.0`` images from train_test_split, the chapter's model_fn and callbacks) and prints one
JSON line per configuration. Keras's downloading loader is replaced by reading the same IDX
files it would download, as ``keras.datasets.fashion_mnist.load_data`` does.

    python benchmarks/chapter_plain.py --configs early-stopping [--data_dir DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from fmtrain.learning import configs


def load_data(directory: Path):
    def read(name, offset):
        with gzip.open(directory / name, "rb") as handle:
            return np.frombuffer(handle.read(), np.uint8, offset=offset)

    train_input = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    train_target = read("train-labels-idx1-ubyte.gz", 8)
    return train_input, train_target


def model_fn(a_layer=None):
    """The chapter's model_fn (with keras.Input, as Keras 3 prefers to input_shape=)."""
    import keras

    model = keras.Sequential()
    model.add(keras.Input(shape=(28, 28)))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(100, activation="relu"))
    if a_layer:
        model.add(a_layer)
    model.add(keras.layers.Dense(10, activation="softmax"))
    return model


def run(name: str, train_scaled, val_scaled, train_target, val_target, workdir: str,
        seed: int | None = None) -> dict:
    import keras

    config = configs.resolve(name, {} if seed is None else {"seed": str(seed)})
    keras.utils.set_random_seed(config.seed)  # the notebook is unseeded; seeded to compare runs

    model = model_fn(keras.layers.Dropout(config.dropout_rate) if config.dropout_rate else None)
    model.compile(optimizer=config.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks, seconds = [], []
    if config.checkpoint:
        callbacks.append(keras.callbacks.ModelCheckpoint(os.path.join(workdir, "best-model.keras"),
                                                         save_best_only=True))
    if config.patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True))
    callbacks.append(keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: seconds.__setitem__(-1, seconds[-1] + time.perf_counter())))
    validation = (val_scaled, val_target) if config.validation else None
    start = time.perf_counter()
    history = model.fit(train_scaled, train_target, epochs=config.epochs, verbose=0,
                        validation_data=validation, callbacks=callbacks)
    fit_seconds = time.perf_counter() - start
    val_loss, val_accuracy = model.evaluate(val_scaled, val_target, verbose=0)
    return {"config": name, "fit_seconds": fit_seconds, "epochs_run": len(seconds),
            "seconds_per_epoch": float(np.median(seconds[1:] or seconds)),
            "val_loss": float(val_loss), "val_accuracy": float(val_accuracy),
            "loss_per_epoch": history.history["loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="early-stopping", help="comma-separated, or all")
    parser.add_argument("--data_dir", default=os.environ.get("FMTRAIN_DATA_DIR", "/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--limit", type=int, default=0, help="first N training images (0 = all)")
    parser.add_argument("--seed", type=int, default=None, help="the seed (default: the configuration's)")
    args = parser.parse_args()
    from sklearn.model_selection import train_test_split

    names = list(configs.CONFIGS) if args.configs == "all" else args.configs.split(",")
    train_input, train_target = load_data(Path(args.data_dir))
    train_scaled = train_input / 255.0
    train_scaled, val_scaled, train_target, val_target = train_test_split(
        train_scaled, train_target, test_size=0.2, random_state=42)
    if args.limit:
        train_scaled, train_target = train_scaled[: args.limit], train_target[: args.limit]
        val_scaled, val_target = val_scaled[: args.limit // 4], val_target[: args.limit // 4]
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            print(json.dumps(run(name, train_scaled, val_scaled, train_target, val_target, workdir, args.seed)), flush=True)


if __name__ == "__main__":
    main()
