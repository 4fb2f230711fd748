"""The single scores a run logs, as typed records: a training run's (``Scores``) and an
evaluation's on the test images (``EvaluationScores``, ``ClassScores``).

The store holds them as single metrics under the field names below; the ``from_metrics``
constructors are the one place that reads those names, so the layers above read typed fields
(``scores.final_val_loss``), never a metric by its string key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

WHOLE_NUMBERS = ("stopped_epoch", "best_epoch", "epochs_run")


@dataclass(frozen=True)
class Scores:
    """A run's single scores; None where the run has none (no validation, no checkpoint, not
    evaluated on the test set, or not finished)."""

    final_val_loss: float | None = None  # the kept model's (the best epoch's, when restored)
    final_val_accuracy: float | None = None
    stopped_epoch: int | None = None  # 0-based index of the last epoch trained
    best_epoch: int | None = None
    epochs_run: int | None = None
    model_val_accuracy: float | None = None  # argmax accuracy of the model in memory
    reload_weights_val_accuracy: float | None = None  # after save_weights() + load_weights()
    reload_whole_val_accuracy: float | None = None  # after save() + load_model()
    reload_checks_passed: bool | None = None
    best_checkpoint_val_loss: float | None = None
    best_checkpoint_val_accuracy: float | None = None
    seconds_per_epoch: float | None = None
    fit_seconds: float | None = None
    test_accuracy: float | None = None  # its model's, once evaluated (a report sets it)

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> Scores:
        """The scores among ``metrics`` (a run's single metrics by name); others are ignored."""
        values = {}
        for field in dataclasses.fields(cls):
            value = metrics.get(field.name)
            if value is None:
                continue
            if field.name in WHOLE_NUMBERS and math.isfinite(value):
                value = int(value)
            elif field.name == "reload_checks_passed":
                value = bool(value)
            values[field.name] = value
        return cls(**values)

    def get(self, name: str):
        """A score by its metric name (for tables that list scores by name); None if unknown."""
        return getattr(self, name, None)


@dataclass(frozen=True)
class EvaluationScores:
    """An evaluation's scores on the test images, under the names of MLflow's classifier
    evaluator (``mlflow.models.evaluate``); None where it logged none. Precision, recall and F1
    are averaged over the classes weighted by their images: on the balanced test set (1,000
    images per class) that is their plain (macro) mean."""

    accuracy_score: float | None = None
    f1_score: float | None = None
    precision_score: float | None = None
    recall_score: float | None = None
    log_loss: float | None = None  # of the class probabilities (fmtrain's extra metric)
    roc_auc: float | None = None  # one class against the rest, averaged (fmtrain's extra metric)
    example_count: int | None = None

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> EvaluationScores:
        """The scores among an evaluation's ``metrics``; others are ignored."""
        values = {field.name: metrics[field.name] for field in dataclasses.fields(cls) if field.name in metrics}
        if values.get("example_count") is not None:
            values["example_count"] = int(values["example_count"])
        return cls(**values)


@dataclass(frozen=True)
class ClassScores:
    """One class's row of an evaluation (MLflow's per-class metrics)."""

    name: str
    precision: float
    recall: float
    f1: float


def argmax_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The chapter's accuracy: the share of images whose most probable class is their label."""
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))
