"""One fit(), several runs: configurations that train the same weights share their epochs.

Two configurations with the same seed and the same settings, save for how many epochs they run,
whether fit() validates, and which callbacks watch (ModelCheckpoint, EarlyStopping), compute the
same weights epoch after epoch: validation and those callbacks change no weight, and the batch
order and Dropout's masks depend on (seed, epoch) and the step alone. The chapter's sweep has
three such families per seed (RMSprop, Adam, Adam with Dropout).

A sweep therefore trains each family's *leader* (the longest member, validating, not stopping
early) with a ``Recorder``, which keeps each epoch's logs and every model and optimizer variable.
Each *follower* is then its own run, trained by ``replay``: its epochs, in order, get the
recorded variables and logs, and its own callbacks (its checkpoint, its early stopping, its
logger) run on them exactly as in a fit() of its own. Its metrics, stopped epoch, kept weights,
checkpoint and saved files equal those of the same configuration trained alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fmtrain.learning.configs import TrainConfig

# Keras is imported inside the functions that need it: the sweep's driver groups its jobs with
# this module before the backend is chosen (importing Keras fixes it).

# The settings that change no weight: what a follower may differ in from its leader.
WATCHING = ("epochs", "validation", "checkpoint", "patience", "system_metrics")


def family(config: TrainConfig) -> TrainConfig:
    """What decides the weights: ``config`` with the settings of WATCHING neutral. Two
    configurations of one family train the same weights, epoch after epoch."""
    return dataclasses.replace(config, epochs=1, validation=True, checkpoint=False, patience=None,
                               system_metrics=0.0)


def can_lead(config: TrainConfig) -> bool:
    """A leader runs every epoch it is given: it does not stop early."""
    return config.patience is None


def follows(leader: TrainConfig, config: TrainConfig) -> bool:
    """Whether ``config``'s epochs are all among ``leader``'s, with the logs it needs."""
    return (family(config) == family(leader) and can_lead(leader) and config.epochs <= leader.epochs
            and (leader.validation or not config.validation))


@dataclass
class Trajectory:
    """What a leader's fit() computed: each epoch's logs and variables, and its seconds."""

    logs: list[dict[str, float]] = field(default_factory=list)
    variables: list[list[np.ndarray]] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.logs)

    def recorder(self):
        """The Keras callback that fills this trajectory, last among fit()'s callbacks."""
        import keras

        trajectory = self

        class Recorder(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                trajectory.logs.append({key: float(value) for key, value in (logs or {}).items()})
                trajectory.variables.append([np.array(keras.ops.convert_to_numpy(variable))
                                             for variable in _state(self.model)])

        return Recorder()


def _state(model) -> list:
    """Every variable that decides what the next step computes: the model's (weights, Dropout's
    seed state) and the optimizer's (moments, iteration count)."""
    return list(model.variables) + list(model.optimizer.variables)


def replay(model, trajectory: Trajectory, callbacks: list, epochs: int,
           validation: bool) -> dict[str, list[float]]:
    """Run ``callbacks`` over the first ``epochs`` epochs of ``trajectory`` as fit() would run
    them over the epochs it trains, ``model`` holding each epoch's variables at its end; stop
    when a callback stops training. Returns the history, as ``fit().history`` would."""
    import keras

    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    events = keras.callbacks.CallbackList(callbacks, model=model)
    model.stop_training = False
    history: dict[str, list[float]] = {}
    events.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in range(min(epochs, len(trajectory))):
        events.on_epoch_begin(epoch)
        for variable, value in zip(_state(model), trajectory.variables[epoch], strict=True):
            variable.assign(value)
        logs = {key: value for key, value in trajectory.logs[epoch].items()
                if validation or not key.startswith("val_")}
        events.on_train_batch_end(0, logs)  # where a signal stops training (signals.keras_safe_points)
        events.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if model.stop_training:
            break
    events.on_train_end(logs)
    return history
