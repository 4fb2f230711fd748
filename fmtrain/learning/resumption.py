"""A training's resumable state: what is saved at each epoch's end, and how fit() continues from it.

Keras's ``BackupAndRestore`` saves the model's weights and the optimizer's variables
(``save_weights``) and the epoch number. It leaves out what a run of the chapter also needs to end
as an uninterrupted one would: the Dropout layer's random state (its ``SeedGenerator`` state is
among ``model.variables`` but not ``model.weights``, so ``save_weights`` skips it), the state of
EarlyStopping (wait, best, best_weights, best_epoch, stopped_epoch) and of ModelCheckpoint
(``best``, and its file), the history so far and each epoch's seconds. So fmtrain saves its own,
one file per epoch (``learning.states``): every variable of the model and of its optimizer,
EarlyStopping's best weights, ModelCheckpoint's file (its bytes) and the rest as JSON.
The batch order needs nothing: epoch ``e`` draws its order from (seed, e) alone
(``batches.epoch_order``), and ``EpochFollower`` follows ``initial_epoch``.

Nothing here knows where the state goes: ``StateSaver`` calls the function it is given with the
files it wrote (the tracking layer logs them as the run's artifacts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from fmtrain.learning.training_state import TrainingState


def _early_stopping(callbacks: list) -> keras.callbacks.EarlyStopping | None:
    return next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)


def _checkpoint(callbacks: list) -> keras.callbacks.ModelCheckpoint | None:
    return next((c for c in callbacks if isinstance(c, keras.callbacks.ModelCheckpoint)), None)


class StateSaver(keras.callbacks.Callback):
    """At each epoch's end, write the TrainingState into ``folder`` and hand the file written
    to ``saved``. Placed after the chapter's callbacks (their state of this epoch is then known)
    and before the epoch's logger: a run killed between the two has the epoch in its state,
    and its resume logs the epoch's metrics from the state's history (no gap, no duplicate)."""

    def __init__(self, folder: Path, saved: Callable[[list[Path]], None], chapter: list,
                 previous: TrainingState | None, seed: int, settings: dict[str, str]):
        super().__init__()
        self.folder, self.saved, self.chapter = Path(folder), saved, chapter
        self.history = {k: list(v) for k, v in (previous.history if previous else {}).items()}
        self.seconds = list(previous.epoch_seconds) if previous else []
        self.seed, self.settings = seed, settings
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.seconds.append(time.perf_counter() - self._start)
        stopper, checkpoint = _early_stopping(self.chapter), _checkpoint(self.chapter)
        state = TrainingState(
            epoch=epoch + 1, stopped=bool(self.model.stop_training), history=self.history,
            epoch_seconds=self.seconds, variables=_values(self.model.variables),
            optimizer_variables=_values(self.model.optimizer.variables),
            seed=self.seed, settings=self.settings)
        if stopper is not None:
            state.early_stopping = {"wait": stopper.wait, "best": _number(stopper.best),
                                    "best_epoch": stopper.best_epoch,
                                    "stopped_epoch": stopper.stopped_epoch}
            state.best_weights = ([np.asarray(w) for w in stopper.best_weights]
                                  if stopper.best_weights is not None else None)
        if checkpoint is not None:
            state.checkpoint_best = _number(checkpoint.best)
            written = Path(checkpoint.filepath)
            state.checkpoint_bytes = written.read_bytes() if written.exists() else None
        self.saved([state.save(self.folder)])


def _number(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _values(variables) -> list[np.ndarray]:
    return [np.asarray(keras.ops.convert_to_numpy(variable)) for variable in variables]


class StateRestorer(keras.callbacks.Callback):
    """Put the chapter's callbacks back in the state saved (at the beginning of fit(), after
    their own ``on_train_begin`` reset them)."""

    def __init__(self, state: TrainingState, chapter: list):
        super().__init__()
        self.state, self.chapter = state, chapter

    def on_train_begin(self, logs=None):
        stopper, checkpoint = _early_stopping(self.chapter), _checkpoint(self.chapter)
        if stopper is not None and self.state.early_stopping is not None:
            saved = self.state.early_stopping
            stopper.wait, stopper.best = saved["wait"], saved["best"]
            stopper.best_epoch, stopper.stopped_epoch = saved["best_epoch"], saved["stopped_epoch"]
            stopper.best_weights = self.state.best_weights
        if checkpoint is not None and self.state.checkpoint_best is not None:
            checkpoint.best = self.state.checkpoint_best


@dataclass
class Resumption:
    """How training.train saves a state each epoch and, given ``state``, continues from it.

    ``saved`` receives the files of each epoch's state; ``folder`` is where they are written.
    """

    folder: Path
    saved: Callable[[list[Path]], None]
    state: TrainingState | None = None
    seed: int = 0
    settings: dict[str, str] = field(default_factory=dict)

    def restore(self, model: keras.Model, chapter: list, workdir: Path) -> int:
        """Put the saved variables into the freshly built ``model`` (and the checkpoint file into
        ``workdir``); returns the epoch fit() begins at."""
        if self.state is None:
            return 0
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for name, values, variables in (("model", self.state.variables, model.variables),
                                        ("optimizer", self.state.optimizer_variables,
                                         model.optimizer.variables)):
            if len(values) != len(variables):
                raise ValueError(f"the resumable state holds {len(values)} {name} variables, the "
                                 f"model built from the run's settings {len(variables)}")
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)
        checkpoint = _checkpoint(chapter)
        if checkpoint is not None and self.state.checkpoint_bytes is not None:
            Path(checkpoint.filepath).parent.mkdir(parents=True, exist_ok=True)
            Path(checkpoint.filepath).write_bytes(self.state.checkpoint_bytes)
        return self.state.epoch

    def callbacks(self, chapter: list) -> list:
        """The callbacks that go right after the chapter's: restore their state, save the new."""
        saver = StateSaver(self.folder, self.saved, chapter, self.state, self.seed, self.settings)
        return ([StateRestorer(self.state, chapter)] if self.state is not None else []) + [saver]

    def epochs(self, epochs: int) -> int:
        """fit()'s ``epochs``: none is left to train when a callback stopped training."""
        return self.state.epoch if self.state is not None and self.state.stopped else epochs

    def whole(self, history: dict[str, list[float]], seconds: list[float]):
        """The history and epoch seconds of the whole run: the state's, then this fit()'s."""
        if self.state is None:
            return history, seconds
        keys = [*self.state.history, *(key for key in history if key not in self.state.history)]
        return ({key: [*self.state.history.get(key, []), *history.get(key, [])] for key in keys},
                [*self.state.epoch_seconds, *seconds])
