"""A search's decisions, made by Optuna through its public API: the study that holds every trial
(in a storage the caller hands in, which outlives this process), its TPE sampler, and the
successive-halving pruner that each trial consults after each epoch.

The driver asks the study for each trial's settings and tells it how the trial ended; the trial,
in whichever process trains it, reports each epoch's val_loss and asks whether to stop. The study
lives in its storage, not in the driver: a search whose driver was killed goes on from it.

No MLflow and no Ray here: ``tracking`` builds the storage, ``execution`` runs the trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna

from fmtrain import internals

# Successive halving on val_loss by epoch: a trial must show its val_loss for MIN_EPOCHS epochs
# before it can be stopped, and at each rung (2, 6, 18 epochs) only the best third goes on.
MIN_EPOCHS = 2
REDUCTION_FACTOR = 3
OBJECTIVE = "val_loss"
# How a trial the search stopped early says so (its run's tag fmtrain.tune.stopped_by).
PRUNED, OUT_OF_TIME = "pruned", "time budget"


def open_study(storage, name: str, seed: int, *, existing: bool = False) -> optuna.Study:
    """The study ``name`` in ``storage``, minimising val_loss, with the successive-halving pruner
    and TPE seeded by ``seed``: a new study, or (``existing``) the one a search left.

    TPE draws its first trials at random from its seeded generator, which a new process starts
    afresh: a study loaded again seeds it with ``seed`` plus the trials the study holds, so that
    its next draws are not the first ones again, and are the same for the same study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_EPOCHS, reduction_factor=REDUCTION_FACTOR)
    if not existing:
        return optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                   sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    held = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    return optuna.load_study(study_name=name, storage=storage, pruner=pruner,
                             sampler=optuna.samplers.TPESampler(seed=seed + held))


def ended_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that ended by themselves: complete, pruned, or failed on their own."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return [trial for trial in study.get_trials(deepcopy=False, states=done)]


def unfinished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials the study still holds as running (their driver died with them)."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def abandon(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
    """Tell the study that a trial it holds as running will not end (its process is gone): FAIL,
    so that the sampler leaves it aside."""
    trial = optuna.trial.Trial(study, internals.optuna_trial_id(frozen))
    study.tell(trial, state=optuna.trial.TrialState.FAIL)


def ask(study: optuna.Study, distributions: dict):
    """The study's next trial, its settings written to the storage before it goes anywhere."""
    trial = study.ask(distributions)
    written(trial)
    return trial


def written(trial) -> None:
    """Send what the trial's storage holds back, for a storage that batches its writes (MLflow's
    sends them from a thread of the process that made it, none in a process that unpickled it)."""
    flush = getattr(trial.storage, "flush_all_batches", None)
    if flush is not None:
        flush()


def tell(study: optuna.Study, trial, value: float | None, stopped_by: str = "", failed: bool = False) -> None:
    """Tell the study how a trial ended: its final val_loss, pruned, or failed."""
    if failed or value is None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    elif stopped_by == PRUNED:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, value)


def epoch_reporter(trial, deadline: float | None, stopped: Callable[[str, int], None]):
    """A Keras callback that, after each epoch (once it is logged), reports the epoch's val_loss to
    ``trial`` and stops training when its pruner says so (``stopped(PRUNED, epoch)``) or when the
    search's time budget is spent (``deadline``, Unix seconds: ``stopped(OUT_OF_TIME, epoch)``).
    An epoch after which training ends anyway (EarlyStopping, the last epoch) is not stopped: the
    trial ended by itself."""
    import keras

    class _Reporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(OBJECTIVE)
            if value is None:
                return
            # The step is the epochs trained, so a trial continued after its worker died is judged
            # at the same rungs as one never interrupted.
            trial.report(float(value), epoch + 1)
            written(trial)
            prune = trial.should_prune()
            last = bool(self.model.stop_training) or epoch + 1 >= self.params.get("epochs", epoch + 2)
            if last:
                return
            if prune:
                stopped(PRUNED, epoch)
            elif deadline is not None and time.time() > deadline:
                stopped(OUT_OF_TIME, epoch)
            else:
                return
            self.model.stop_training = True

    return _Reporter()
