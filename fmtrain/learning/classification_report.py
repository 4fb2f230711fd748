"""Evaluate a classifier on the held-out test images with scikit-learn's metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmtrain.learning.batches import EVAL_BATCH_SIZE
from fmtrain.learning.data import CLASS_NAMES
from fmtrain.learning.scores import Scores

MISCLASSIFIED_SHOWN = 24


@dataclass(frozen=True)
class ClassScores:
    """One class's row of the test report."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Evaluation:
    """Test-set results: headline metrics (logged under these names), per-class rows, the
    confusion matrix and the predictions."""

    metrics: dict[str, float]
    per_class: list[ClassScores]
    confusion: np.ndarray
    predicted: np.ndarray

    @property
    def scores(self) -> Scores:
        return Scores.from_metrics(self.metrics)

    @property
    def size(self) -> int:
        return len(self.predicted)


def evaluate(model, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Predict ``images`` with a Keras model and score the predictions against ``labels``.

    Raises ValueError when the model does not take 28x28 images or does not give 10 classes.
    """
    expected = tuple(model.input_shape[1:])
    if expected != tuple(images.shape[1:]):
        raise ValueError(f"the model takes inputs of shape {expected}, "
                         f"but the test images are {tuple(images.shape[1:])}")
    probabilities = model.predict(images, batch_size=EVAL_BATCH_SIZE, verbose=0)
    if probabilities.shape != (len(images), len(CLASS_NAMES)):
        raise ValueError(f"the model gives outputs of shape {probabilities.shape[1:]}, "
                         f"not one probability per class ({len(CLASS_NAMES)})")
    return score(probabilities, labels)


def score(probabilities: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Metrics of class ``probabilities`` (n x 10) against integer ``labels``."""
    from sklearn import metrics as skm

    classes = list(range(len(CLASS_NAMES)))
    predicted = np.argmax(probabilities, axis=-1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    per_class = [ClassScores(CLASS_NAMES[i], float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
                 for i in classes]
    metrics = {
        "test_loss": float(skm.log_loss(labels, probabilities, labels=classes)),
        "test_accuracy": float(skm.accuracy_score(labels, predicted)),
        "test_macro_f1": float(skm.f1_score(labels, predicted, average="macro", zero_division=0)),
        "test_size": float(len(labels)),
    }
    confusion = skm.confusion_matrix(labels, predicted, labels=classes)
    return Evaluation(metrics, per_class, confusion, predicted)
