"""How the images reach Keras on each backend, and the seed.

On TensorFlow the uint8 images go through Keras's own array pipeline and are scaled per batch
(a quarter of the memory of float copies, and the same batches and shuffle as the chapter's
``fit()`` on float arrays: a test checks the losses against the chapter's code). On JAX, where
that pipeline would import TensorFlow (seconds of start-up and hundreds of MiB), Keras gets
float32 arrays, as in the chapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from fmtrain import internals
from fmtrain.learning.data import Splits, scale

# Batch size for validation, predict and evaluate: results do not depend on it beyond float
# rounding, and the chapter's 32 costs each epoch 375 small validation steps.
EVAL_BATCH_SIZE = 1024


@dataclass
class Feed:
    """The arguments that hand the data to fit(), evaluate() and predict() on this backend."""

    train: dict  # fit(**train, ...)
    validation: object  # fit(validation_data=...)
    validation_options: dict  # more fit() arguments for validation
    checks: dict  # evaluate(**checks) on the validation split; predict(checks["x"], ...)

    def predict(self, model):
        return model.predict(self.checks["x"], batch_size=self.checks.get("batch_size"), verbose=0)

    def evaluate(self, model) -> tuple[float, float]:
        loss, accuracy = model.evaluate(**self.checks, verbose=0)
        return float(loss), float(accuracy)


def feed(splits: Splits, batch_size: int) -> Feed:
    """The Feed for the current Keras backend."""
    if keras.backend.backend() == "tensorflow":
        checks = scaled_batches(splits.x_val, splits.y_val, EVAL_BATCH_SIZE, shuffle=False)
        return Feed(train={"x": scaled_batches(splits.x_train, splits.y_train, batch_size, shuffle=True)},
                    validation=checks, validation_options={}, checks={"x": checks})
    x_val = scale(splits.x_val)
    return Feed(train={"x": scale(splits.x_train), "y": splits.y_train, "batch_size": batch_size},
                validation=(x_val, splits.y_val),
                validation_options={"validation_batch_size": EVAL_BATCH_SIZE},
                checks={"x": x_val, "y": splits.y_val, "batch_size": EVAL_BATCH_SIZE})


def scaled_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool):
    """The batches ``fit()`` makes from arrays, built from uint8 images scaled per batch.

    Given arrays, Keras copies them whole into its tf.data pipeline; given the uint8 images and
    scaling each batch, the pipeline holds a quarter of the memory. The values are the same
    (float32 x / 255 equals the chapter's float64 x / 255.0 cast to float32), and Keras's own
    ArrayDataAdapter draws the same shuffle and batches as fit() does for arrays.
    """
    import tensorflow as tf

    dataset = internals.keras_array_dataset(images, labels, batch_size, shuffle)
    return dataset.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))


def set_seed(seed: int) -> None:
    """Seed weights, shuffling and dropout (``keras.utils.set_random_seed``)."""
    keras.utils.set_random_seed(seed)
