"""The single scores a run logs, as one typed record.

Training returns them and the store holds them as single metrics under the field names below;
``Scores.from_metrics`` is the one place that reads those names, so the layers above read typed
fields (``scores.final_val_loss``), never a metric by its string key.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

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
    test_loss: float | None = None  # set by an evaluation on the 10,000 test images
    test_accuracy: float | None = None
    test_macro_f1: float | None = None

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
