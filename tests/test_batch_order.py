"""fmtrain owns the order of the training batches: each epoch a permutation drawn from (seed,
epoch), the same on TensorFlow and JAX. The order is recorded where fit() uses it: a layer
that reads, from each image it is given, the index that the test wrote into its pixels."""

import json
import os
import subprocess
import sys

import numpy as np

from fmtrain.learning import batches

from conftest import PROJECT

# Trains 3 epochs on 100 images whose first two pixels hold their index, through fmtrain's feed,
# eagerly, so that a layer sees each batch; prints the indices each epoch visited.
RECORDER = """
import json, sys
import numpy as np
from fmtrain.learning import backend
keras = backend.use(sys.argv[1])
from fmtrain.learning import batches, data

size = 100
images = np.zeros((size, 28, 28), np.uint8)
images[:, 0, 0], images[:, 0, 1] = np.arange(size) % 256, np.arange(size) // 256
labels = np.arange(size) % 10
splits = data.Splits(images, labels, images[:20], labels[:20], "index-coded")
seen = []

class Recorder(keras.layers.Layer):
    def call(self, x):
        try:
            values = np.asarray(x)
        except Exception:  # symbolic, while Keras builds the model: no batch yet
            return x
        pixels = np.rint(values[:, 0, :2] * 255).astype(int)
        seen.append((pixels[:, 0] + 256 * pixels[:, 1]).tolist())
        return x

class Epochs(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        seen.append(["epoch"])

keras.utils.set_random_seed(7)
model = keras.Sequential([keras.Input((28, 28)), Recorder(), keras.layers.Flatten(),
                          keras.layers.Dense(10, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
feed = batches.feed(splits, batch_size=16, seed=7, batch_order=sys.argv[2])
model.fit(**feed.train, epochs=3, verbose=0, callbacks=[*feed.callbacks, Epochs()])
epochs = []
for entry in seen:
    if entry == ["epoch"]:
        epochs.append([])
    else:
        epochs[-1].extend(entry)
print(json.dumps(epochs))
"""


def _visited(backend: str, order: str = "seeded") -> list[list[int]]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", RECORDER, backend, order], env=env, cwd=PROJECT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_both_backends_visit_the_seeded_order_and_reshuffle_every_epoch():
    on_tensorflow, on_jax = _visited("tensorflow"), _visited("jax")
    expected = [batches.epoch_order(7, epoch, 100).tolist() for epoch in range(3)]
    assert on_tensorflow == expected
    assert on_jax == expected
    assert len({tuple(order) for order in expected}) == 3  # a new order each epoch
    assert all(sorted(order) == list(range(100)) for order in expected)  # each image once


def test_an_epochs_order_depends_on_seed_and_epoch_alone():
    again = [batches.epoch_order(42, epoch, 48_000) for epoch in (0, 5)]
    assert np.array_equal(again[0], batches.epoch_order(42, 0, 48_000))
    assert np.array_equal(again[1], batches.epoch_order(42, 5, 48_000))
    assert not np.array_equal(again[0], batches.epoch_order(43, 0, 48_000))
    # A resumed run draws epoch 5 without drawing epochs 0-4 first: nothing carries over.
    feed_batches = batches.EpochBatches(np.zeros((48_000, 28, 28), np.uint8), np.arange(48_000) % 10,
                                        batch_size=32, seed=42, epoch=5)
    assert np.array_equal(feed_batches.order(), again[1])
    assert len(feed_batches) == 1500
