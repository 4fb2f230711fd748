"""The order of the training batches, how they reach Keras on each backend, and the seed.

fmtrain owns the batch order: epoch ``e`` of a run with seed ``s`` visits the training images
in ``epoch_order(s, e, n)``, a permutation drawn by numpy's Generator seeded with ``(s, e)``,
and fit() is fed those batches with nothing left for Keras to shuffle. So a run reshuffles every
epoch, both backends see the same batches, and any epoch's order can be made again from
(seed, epoch) alone (a resumed run's). Keras's own ``fit(shuffle=True)`` differs between its
backends: after ``keras.utils.set_random_seed``, TensorFlow visits the images in the same order
every epoch, JAX in a new one (docs/keras-tf-shuffle.md); ``batch_order="keras"`` keeps that
behaviour for comparison.

The training images stay uint8 and are scaled per batch (a quarter of the memory of float
copies; the values equal the chapter's float64 ``x / 255.0`` cast to float32) by a
``keras.utils.PyDataset`` on JAX and by a tf.data pipeline made from it on TensorFlow (where
the PyDataset would cost a Python call per batch). Validation batches come from a tf.data
pipeline on TensorFlow and from float32 arrays on JAX, where tf.data would import TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import keras
import numpy as np

from fmtrain.learning.data import Splits, scale

# Batch size for validation, predict and evaluate: results do not depend on it beyond float
# rounding, and the chapter's 32 costs each epoch 375 small validation steps.
EVAL_BATCH_SIZE = 1024


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The order in which epoch ``epoch`` (0-based) of a run seeded ``seed`` visits ``size``
    training images: a permutation of ``range(size)`` that depends on (seed, epoch) alone."""
    return np.random.default_rng((seed, epoch)).permutation(size)


class EpochBatches(keras.utils.PyDataset):
    """The training batches of one epoch, in ``epoch_order(seed, epoch)``, as (scaled images,
    labels). ``epoch`` is set before each epoch by ``EpochFollower``, from Keras's own epoch
    index (``initial_epoch`` included); Keras iterates the batches in index order."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, epoch: int = 0):
        super().__init__()
        self.images, self.labels, self.batch_size, self.seed = images, labels, batch_size, seed
        self.epoch = epoch
        self._order = (None, None)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def order(self) -> np.ndarray:
        if self._order[0] != self.epoch:
            self._order = (self.epoch, epoch_order(self.seed, self.epoch, len(self.labels)))
        return self._order[1]

    def __getitem__(self, index: int):
        chosen = self.order()[index * self.batch_size:(index + 1) * self.batch_size]
        return scale(self.images[chosen]), self.labels[chosen]


class EpochFollower(keras.callbacks.Callback):
    """Tells the batches which epoch fit() begins, before it draws the epoch's first batch."""

    def __init__(self, batches: EpochBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


@dataclass
class Feed:
    """The arguments that hand the data to fit(), evaluate() and predict() on this backend."""

    train: dict  # fit(**train, ...)
    validation: object  # fit(validation_data=...)
    validation_options: dict  # more fit() arguments for validation
    checks: dict  # evaluate(**checks) on the validation split; predict(checks["x"], ...)
    callbacks: list = field(default_factory=list)  # for fit(), before any other

    def predict(self, model):
        return model.predict(self.checks["x"], batch_size=self.checks.get("batch_size"), verbose=0)

    def evaluate(self, model) -> tuple[float, float]:
        loss, accuracy = model.evaluate(**self.checks, verbose=0)
        return float(loss), float(accuracy)


def feed(splits: Splits, batch_size: int, seed: int, batch_order: str = "seeded") -> Feed:
    """The Feed for the current Keras backend: the training batches in ``batch_order``, and the
    validation split in batches of EVAL_BATCH_SIZE."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        checks = tf.data.Dataset.from_tensor_slices((splits.x_val, splits.y_val)).batch(EVAL_BATCH_SIZE)
        checks = checks.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
        validation, validation_options, check_args = checks, {}, {"x": checks}
    else:
        x_val = scale(splits.x_val)
        validation, validation_options = (x_val, splits.y_val), {"validation_batch_size": EVAL_BATCH_SIZE}
        check_args = {"x": x_val, "y": splits.y_val, "batch_size": EVAL_BATCH_SIZE}
    if batch_order == "keras":
        return Feed({"x": scale(splits.x_train), "y": splits.y_train, "batch_size": batch_size, "shuffle": True},
                    validation, validation_options, check_args)
    batches = EpochBatches(splits.x_train, splits.y_train, batch_size, seed)
    train = _tf_pipeline(batches) if keras.backend.backend() == "tensorflow" else batches
    return Feed({"x": train, "shuffle": False}, validation, validation_options, check_args,
                callbacks=[EpochFollower(batches)])


def _tf_pipeline(batches: EpochBatches):
    """The same batches as a tf.data pipeline: one Python call per epoch for the epoch's order
    (Keras iterates the pipeline anew each epoch, after EpochFollower set the epoch), then the
    uint8 images gathered and scaled per batch in the graph. Keras would run a PyDataset
    through a Python generator, one call per batch (about 1.7x the time of an epoch here)."""
    import tensorflow as tf

    images, labels = tf.constant(batches.images), tf.constant(batches.labels)
    size = len(batches.labels)

    def order(_):
        indices = tf.numpy_function(lambda: batches.order().astype(np.int32), [], tf.int32)
        return tf.ensure_shape(indices, [size])

    indices = tf.data.Dataset.from_tensors(0).map(order).flat_map(
        lambda chosen: tf.data.Dataset.from_tensor_slices(chosen).batch(batches.batch_size))
    pipeline = indices.map(lambda chosen: (tf.cast(tf.gather(images, chosen), tf.float32) / 255.0,
                                           tf.gather(labels, chosen)))
    return pipeline.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(tf.data.AUTOTUNE)


def set_seed(seed: int) -> None:
    """Seed weights and dropout (``keras.utils.set_random_seed``); the batch order has its own."""
    keras.utils.set_random_seed(seed)
