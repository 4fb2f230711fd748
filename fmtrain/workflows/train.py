"""One training run: data, fit, the chapter's checks, logging, and optional registration.

``train_run`` is the one function that makes a training run: ``fmtrain train`` calls it, and so
does every child of a sweep, so a child differs from a single run only by its parent and tags.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fmtrain.analysis import descriptions
from fmtrain.errors import RunEnded, one_line
from fmtrain.execution import signals
from fmtrain.learning import backend, configs, data
from fmtrain.learning.configs import TrainConfig

if TYPE_CHECKING:  # Keras is imported only once the backend is chosen
    from fmtrain.learning.training import TrainResult
    from fmtrain.learning.trajectory import Trajectory
    from fmtrain.tracking.records import Labels
    from fmtrain.tracking.state_artifacts import ResumePoint
    from fmtrain.tracking.ui import UiLink

CURVES = ("loss", "accuracy")  # each drawn as a figure, with its val_ twin


@dataclass
class TrainOutcome:
    """A finished training run: its id, what training returned, the model, its version and
    where the MLflow UI shows the run."""

    run_id: str
    name: str
    result: TrainResult
    model_uri: str
    registered_version: str | None = None
    link: UiLink | None = None


def run_params(name: str, config: TrainConfig, splits: data.Splits) -> dict[str, str]:
    """The params every training run logs: the configuration's name, every setting, the data."""
    return {"config": name, **config.to_params(), "data_source": splits.source,
            "train_size": str(len(splits.y_train)), "val_size": str(len(splits.y_val))}


def train_run(config: TrainConfig, name: str, splits: data.Splits, *, register_as: str | None = None,
              verbose: int = 0, parent_run_id: str | None = None, labels: Labels | None = None,
              run_name: str | None = None, gates: list | None = None, record: Trajectory | None = None,
              following: tuple[str, Trajectory] | None = None, resume_from: ResumePoint | None = None,
              keep_state: bool = False) -> TrainOutcome:
    """Train ``config`` inside one MLflow run and log everything a user compares or reloads.

    With ``parent_run_id`` the run is a sweep's child, nested under that run, whether the parent
    is open in this process or in a sweep's driver (this process being a Ray worker).
    ``labels`` say what the run is (a sweep child's seed and job, a trial's search and number).
    ``gates`` are Keras callbacks that run after each epoch, once it is logged and timed (a
    search's trial reporting to its study and asking whether to stop). ``record`` keeps the epochs' logs and variables for
    followers; ``following`` (the leader's run id and its record) replays a leader's epochs
    instead of computing them again (``learning.trajectory``), and the run's tag
    ``fmtrain.epochs_from`` names the leader.
    Each epoch leaves a resumable state in the run (``tracking.states``), removed when the run
    ends FINISHED unless ``keep_state``; ``resume_from`` reopens that run and continues it from
    its state (``workflows.resume`` checks that it may).
    Raises RunEnded naming the run when training or logging fails or a signal stops it.
    """
    backend.use(config.backend)
    from fmtrain.analysis import figures, tables
    from fmtrain.learning import training
    from fmtrain.learning.resumption import Resumption
    from fmtrain.tracking import datasets, logged, logged_models, runs
    from fmtrain.tracking import state_artifacts as states
    from fmtrain.tracking.records import Labels

    requirements = backend.requirements(config.backend)
    settings = config.to_params()
    labels = dataclasses.replace(labels or Labels(), config=name,
                                 epochs_from=following[0] if following else None, register_as=register_as)
    # Once the run exists, a signal is acted on at safe points only: the end of a training step,
    # between two store writes (signals.check()).
    with signals.deferred(), \
            runs.tracked_run(run_name or name, run_params(name, config, splits),
                             parent_run_id=parent_run_id, labels=labels,
                             description=descriptions.run_description(name, settings),
                             run_id=resume_from.run_id if resume_from else None,
                             system_metrics=config.system_metrics) as run_id:
        if resume_from is None:
            datasets.log_data_inputs(splits.source, datasets.split_inputs(splits))
        else:
            states.before_continuing(run_id, resume_from)
        with tempfile.TemporaryDirectory(prefix="fmtrain-") as workdir, _full_disk_named(workdir):
            resumption = Resumption(Path(workdir) / "resume", states.state_logger(run_id),
                                    resume_from.state if resume_from else None, config.seed, settings)
            result = training.train(config, splits, workdir, verbose=verbose,
                                    callbacks=[logged.epoch_logger(run_id), signals.keras_safe_points()],
                                    gates=gates, stop_guard=signals.soft_stop, record=record,
                                    replaying=following[1] if following else None, resumption=resumption)
            signals.check()
            # The models first: MLflow links each to the metrics its epoch already holds.
            checkpoint = result.files.get("best_checkpoint")
            model = logged.log_models(
                logged_models.ModelToLog(result.files["whole_model"], name, result.kept_epoch),
                logged_models.checkpoint_model(checkpoint, result.best_epoch) if checkpoint else None,
                splits.x_val[:2], requirements, config.backend)
            signals.check()
            curves = {f"{metric}-curve.png": figures.curve_figure(result.history, metric)
                       for metric in CURVES}
            logged.log_training(run_id, result, curves, model.model_id, tables.history_csv(result.history))
            signals.check()
            logged.describe_run(run_id, descriptions.run_description(name, settings, result.scores))
    if not keep_state:
        with contextlib.suppress(Exception):  # a state left behind is harmless: the run is FINISHED
            states.remove_state(run_id)
    version = register_finished(run_id, register_as) if register_as else None
    return TrainOutcome(run_id, run_name or name, result, model.uri, version)


@contextlib.contextmanager
def _full_disk_named(folder: str):
    """A full disk reported by Keras's writers without a file name gets the run's folder."""
    try:
        yield
    except OSError as error:
        if error.errno == errno.ENOSPC and not error.filename:
            raise OSError(errno.ENOSPC, "No space left on device", folder) from error
        raise


def register_finished(run_id: str, name: str, alias: str | None = None) -> str:
    """Register a finished run's model; a failure names the run, which stays FINISHED."""
    from fmtrain.workflows.evaluate import register_described

    try:
        return register_described(run_id, name, alias)
    except Exception as error:  # noqa: BLE001 - reported with the run id the user needs
        raise RunEnded(f"run {run_id} finished, but registering its model as {name!r} "
                       f"failed: {one_line(error)}", run_id) from error


def train(config_name: str, overrides: dict, *, data_dir=None, experiment: str | None = None,
          register_as: str | None = None, verbose: int = 0, keep_state: bool = False) -> TrainOutcome:
    """``fmtrain train``: check the input, then train one configuration as one run.

    Everything that can be checked (settings, data, store) is checked before the run exists.
    """
    from fmtrain.tracking import store, ui

    config = configs.resolve(config_name, overrides)
    splits = data.load_splits(data_dir, config.limit)
    store.open_store(experiment)
    outcome = train_run(config, config_name, splits, register_as=register_as, verbose=verbose,
                        keep_state=keep_state)
    outcome.link = ui.ui_link(outcome.run_id, run_page=True)
    return outcome
