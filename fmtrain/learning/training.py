"""Train one configuration the chapter's way and run its save/reload checks.

Nothing here knows about MLflow: ``train`` returns the history, the figures' inputs, metric
values and the paths of the files it wrote, and the tracking module decides what to log.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from fmtrain.learning import batches
from fmtrain.learning.configs import TrainConfig
from fmtrain.learning.data import Splits
from fmtrain.learning.model import build_callbacks, build_model
from fmtrain.learning.resumption import Resumption
from fmtrain.learning.scores import Scores
from fmtrain.learning.scores import argmax_accuracy as accuracy_of_probabilities
from fmtrain.learning.trajectory import Trajectory, replay

WHOLE_MODEL_FILE = "model-whole.keras"
WEIGHTS_FILE = "model.weights.h5"
CHECKPOINT_FILE = "best-model.keras"


@dataclass
class TrainResult:
    """What one training run produced."""

    model: keras.Model
    history: dict[str, list[float]]
    stopped_epoch: int  # 0-based index of the last epoch trained
    best_epoch: int  # 0-based epoch of the lowest val_loss (train loss without validation)
    early_stopped: bool
    kept_epoch: int  # 0-based epoch whose weights the model holds at the end (best, when restored)
    fit_seconds: float
    epoch_seconds: list[float]
    metrics: dict[str, float] = field(default_factory=dict)  # logged as single metrics
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def scores(self) -> Scores:
        """The metrics as a typed record, the stopped epoch included."""
        return Scores.from_metrics({**self.metrics, "stopped_epoch": self.stopped_epoch})


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def train(config: TrainConfig, splits: Splits, workdir: str | Path, verbose: int = 0,
          callbacks: list | None = None, gates: list | None = None,
          stop_guard: Callable[[Callable[[], None]], contextlib.AbstractContextManager] | None = None,
          record: Trajectory | None = None, replaying: Trajectory | None = None,
          resumption: Resumption | None = None) -> TrainResult:
    """Fit ``config`` on ``splits``, save the model the chapter's ways and check the reloads.

    Args:
        config: the experiment.
        splits: training and validation arrays.
        workdir: an existing directory for model-whole.keras, model.weights.h5, best-model.keras.
        verbose: Keras's fit() verbosity (0 silent, 1 progress bar, 2 a line per epoch).
        callbacks: more Keras callbacks for fit(), after the chapter's (a logger, say).
        gates: callbacks that may wait between epochs (a search's), after the epoch timer, so
            that their waiting is not counted in the epoch's seconds.
        stop_guard: given a function that stops fit() after the current step, a context manager
            that guards fit() (the command line's signal handling); none by default.
        record: a Trajectory to fill with each epoch's logs and variables (a sweep's leader).
        replaying: a leader's Trajectory whose epochs this configuration follows
            (``trajectory.follows``): the callbacks run over them instead of fit() computing
            them again, and the epochs' seconds are the leader's.
        resumption: save a resumable state at each epoch's end and, holding one, continue from it
            (``learning.resume``); none by default.

    Returns:
        A TrainResult whose metrics include final_val_loss/accuracy of the model kept and the
        reload checks (their accuracies must equal ``model_val_accuracy``).
    """
    workdir = Path(workdir)
    batches.set_seed(config.seed)
    model = build_model(config)
    timer = _EpochTimer()
    data = batches.feed(splits, config.batch_size, config.seed, config.batch_order)
    chapter = build_callbacks(config, str(workdir / CHECKPOINT_FILE))
    first_epoch, epochs = 0, config.epochs
    if resumption is not None:
        first_epoch, epochs = resumption.restore(model, chapter, workdir), resumption.epochs(epochs)
        chapter += resumption.callbacks(chapter)  # after the chapter's, before the logger
    # The timer comes after the logging callbacks, so that each epoch's seconds include their work.
    callbacks = (data.callbacks + chapter + list(callbacks or []) + [timer] + list(gates or [])
                 + ([record.recorder()] if record is not None else []))
    # Validation changes no weight: its batch size only decides how the mean loss is summed
    # (float rounding), and large batches make it several times faster than the chapter's 32.
    validation = (dict(validation_data=data.validation, **data.validation_options)
                  if config.validation else {})
    start = time.perf_counter()
    guard = stop_guard or (lambda stop: contextlib.nullcontext())
    stop_after_the_step = guard(lambda: setattr(model, "stop_training", True))
    with _known_keras_warnings_ignored(), stop_after_the_step:
        if replaying is not None:
            history = replay(model, replaying, callbacks, config.epochs, config.validation)
        else:
            history = model.fit(**data.train, epochs=epochs, initial_epoch=first_epoch,
                                callbacks=callbacks, verbose=verbose, **validation).history
    fit_seconds = time.perf_counter() - start
    _check_finite(history)
    if replaying is not None:
        timer.seconds = replaying.epoch_seconds[:len(timer.seconds)]
    if record is not None:
        record.epoch_seconds = list(timer.seconds)

    curves = {name: [float(v) for v in values] for name, values in history.items()}
    seconds = timer.seconds
    if resumption is not None:
        curves, seconds = resumption.whole(curves, seconds)
    watched = curves["val_loss" if config.validation else "loss"]
    best_epoch = int(np.argmin(watched))
    # EarlyStopping(restore_best_weights=True) puts the best epoch's weights back when training
    # ends, stopped early or not; without it the model keeps the last epoch's.
    kept_epoch = best_epoch if config.patience is not None else len(watched) - 1
    result = TrainResult(model=model, history=curves, stopped_epoch=len(watched) - 1,
                         best_epoch=best_epoch, early_stopped=len(watched) < config.epochs,
                         kept_epoch=kept_epoch, fit_seconds=fit_seconds,
                         epoch_seconds=seconds)
    with _known_keras_warnings_ignored():
        result.metrics.update(_final_metrics(result, data))
        result.files = save_and_check(model, config, data, splits.y_val, workdir, result.metrics)
    return result


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: Keras's TerminateOnNaN stopped training."""


def _check_finite(history: dict) -> None:
    for epoch, value in enumerate(history.get("loss", [])):
        if not math.isfinite(value):
            raise TrainingDiverged(f"the training loss became {value} at epoch {epoch}; "
                                   "training stopped (try a smaller learning_rate)")


@contextlib.contextmanager
def _known_keras_warnings_ignored():
    """Hide Keras warnings that are expected here and say nothing a user can act on."""
    with warnings.catch_warnings():
        # A last call of steps_per_execution steps that finds fewer batches left is expected.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        # A reloaded model builds its optimizer lazily, so Keras says it skipped the saved
        # optimizer variables; the checks only predict and evaluate, which never use them.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        yield


def _final_metrics(result: TrainResult, data: batches.Feed) -> dict[str, float]:
    loss, accuracy = data.evaluate(result.model)
    steady = result.epoch_seconds[1:] or result.epoch_seconds
    return {
        "final_val_loss": float(loss),
        "final_val_accuracy": float(accuracy),
        "epochs_run": float(len(result.epoch_seconds)),
        "best_epoch": float(result.best_epoch),
        "fit_seconds": result.fit_seconds,
        # The first epoch includes tracing the graph; later ones show the steady speed.
        "seconds_per_epoch": float(np.median(steady)),
    }


def plain_steps(model: keras.Model) -> None:
    """One step per call from now on, also in the saved model's compile config.

    Many steps per call speed up fit(); a saved model that kept them would give every user's
    predict() 100-step calls and a progress bar counting past its total (``400/313``).
    """
    # Keras writes the arguments of the last compile() into the saved file: compile again with
    # the same optimizer (its state kept), loss and metrics.
    model.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"], steps_per_execution=1)


def argmax_accuracy(model: keras.Model, data: batches.Feed, labels: np.ndarray) -> float:
    """The chapter's check: mean of argmax(predict) == label, over the validation split."""
    return accuracy_of_probabilities(data.predict(model), labels)


def save_and_check(model, config, data: batches.Feed, y_val, workdir: Path, metrics: dict) -> dict[str, Path]:
    """``save()`` and ``save_weights()``, then reload both ways (and the best checkpoint)
    and record each one's validation accuracy in ``metrics``. Returns the files written."""
    files = {"whole_model": workdir / WHOLE_MODEL_FILE, "weights": workdir / WEIGHTS_FILE}
    plain_steps(model)
    model.save(files["whole_model"])
    model.save_weights(files["weights"])

    metrics["model_val_accuracy"] = argmax_accuracy(model, data, y_val)
    fresh = build_model(config)
    fresh.load_weights(files["weights"])
    metrics["reload_weights_val_accuracy"] = argmax_accuracy(fresh, data, y_val)
    whole = keras.models.load_model(files["whole_model"])
    metrics["reload_whole_val_accuracy"] = argmax_accuracy(whole, data, y_val)
    metrics["reload_checks_passed"] = float(
        metrics["reload_weights_val_accuracy"] == metrics["model_val_accuracy"]
        == metrics["reload_whole_val_accuracy"])

    checkpoint = workdir / CHECKPOINT_FILE
    if config.checkpoint and checkpoint.exists():
        files["best_checkpoint"] = checkpoint
        best = keras.models.load_model(checkpoint)
        metrics["best_checkpoint_val_loss"], metrics["best_checkpoint_val_accuracy"] = data.evaluate(best)
    return files

