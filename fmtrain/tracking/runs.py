"""The MLflow boundary for training: runs, autologging, params, metrics, artifacts, the model.

The tracking store is ``MLFLOW_TRACKING_URI`` when set, otherwise MLflow's default
(``sqlite:///mlflow.db`` in the working directory). Under ``mlflow run`` the run already
exists (``MLFLOW_RUN_ID``) and holds the ``-P`` values as params: they are kept, and only the
resolved settings it lacks are added, so a param never changes value.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fmtrain import configs, plots
from fmtrain.configs import TrainConfig
from fmtrain.data import Splits, scale

DEFAULT_EXPERIMENT = "fashion-mnist"
CONFIG_TAG = "fmtrain.config"
ERROR_TAG = "fmtrain.error"
MODEL_NAME = "model"  # the name each training run logs its model under
# Error codes with which stores say that a run, model, version or alias does not exist.
MISSING_CODES = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class TrackingError(Exception):
    """Something failed after a run was created; the message names the run."""


class RunFailed(TrackingError):
    """A run that started and then failed: it is marked FAILED, with the error as a tag."""

    def __init__(self, run_id: str, name: str, error: BaseException):
        self.run_id = run_id
        super().__init__(f"run {run_id} ({name}) failed: {describe_error(error)}")


@dataclass
class RunOutcome:
    """A finished training run: its id, what training returned, and the registered version."""

    run_id: str
    result: object  # fmtrain.training.TrainResult
    model_uri: str
    registered_version: str | None = None


def use_experiment(experiment: str | None) -> None:
    """Select the experiment for new runs (not under ``mlflow run``, which chose it already)."""
    if os.environ.get("MLFLOW_RUN_ID"):
        return
    mlflow.set_experiment(experiment or DEFAULT_EXPERIMENT)


@contextlib.contextmanager
def tracked_run(name: str, params: dict[str, str], *, tags: dict | None = None, nested: bool = False):
    """Open (or, under ``mlflow run``, resume) a run named ``name`` holding ``params``; yield its id.

    An error inside ends the run FAILED with the error as the tag ``fmtrain.error`` and is raised
    again as RunFailed; Ctrl-C ends it FAILED too and stays a KeyboardInterrupt.
    """
    with mlflow.start_run(run_name=name, nested=nested, tags=tags or {}) as run:
        try:
            log_params(MlflowClient(), run.info.run_id, params)
            yield run.info.run_id
        except BaseException as error:
            mlflow.set_tag(ERROR_TAG, describe_error(error))
            if isinstance(error, Exception) and not isinstance(error, RunFailed):
                raise RunFailed(run.info.run_id, name, error) from error
            raise


def train_run(config: TrainConfig, name: str, splits: Splits, *, register_as: str | None = None,
              verbose: int = 0, nested: bool = False) -> RunOutcome:
    """Train ``config`` inside one MLflow run and log everything a user compares or reloads.

    Raises RunFailed (the run is FAILED) when training or logging fails.
    """
    from fmtrain import training  # TensorFlow is imported only when a run really trains

    params = {"config": name, **config.to_params(), "data_source": splits.source,
              "train_size": str(len(splits.y_train)), "val_size": str(len(splits.y_val))}
    with tracked_run(name, params, tags={CONFIG_TAG: name}, nested=nested) as run_id:
        try:
            # The tensorflow flavor is the one that logs stopped_epoch/restored_epoch. Models,
            # checkpoints and datasets are left out here: fmtrain logs the kept model once
            # itself, with the chapter's own best checkpoint, and per-epoch work stays light.
            mlflow.tensorflow.autolog(log_models=False, checkpoint=False, log_datasets=False)
            with tempfile.TemporaryDirectory(prefix="fmtrain-") as workdir:
                result = training.train(config, splits, workdir, verbose=verbose)
                _log_result(run_id, result)
            model_uri = _log_model(result.model, splits)
        finally:
            mlflow.tensorflow.autolog(disable=True)
    version = register_finished(run_id, register_as) if register_as else None
    return RunOutcome(run_id, result, model_uri, version)


def register_finished(run_id: str, name: str, alias: str | None = None) -> str:
    """Register a finished run's model; a failure names the run, which stays FINISHED."""
    from fmtrain import registry

    try:
        return str(registry.register(run_id, name, alias).version)
    except Exception as error:  # noqa: BLE001 - reported with the run id the user needs
        raise TrackingError(f"run {run_id} finished, but registering its model as {name!r} "
                            f"failed: {describe_error(error)}") from error


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    """Log ``params`` once: keys the run already holds (from ``mlflow run -P``) must mean the
    same value and are left as they are; a contradiction is a ValueError."""
    existing = client.get_run(run_id).data.params
    missing = {}
    for key, value in params.items():
        if key not in existing:
            missing[key] = value
        elif not _same_value(key, existing[key], value):
            raise ValueError(f"param {key} is already logged in run {run_id} as "
                             f"{existing[key]!r} but resolves to {value!r}")
    if missing:
        mlflow.log_params(missing)


def _same_value(key: str, logged: str, value: str) -> bool:
    if logged == value:
        return True
    try:
        return configs.parse_value(key, logged.strip("'\"")) == configs.parse_value(key, value)
    except ValueError:
        return False


def _log_result(run_id: str, result) -> None:
    metrics = dict(result.metrics)
    # Autolog logs stopped_epoch only when EarlyStopping stopped training; fmtrain logs it for
    # every run (the last epoch trained, 0-based) so runs compare side by side.
    if "stopped_epoch" not in MlflowClient().get_run(run_id).data.metrics:
        metrics["stopped_epoch"] = float(result.stopped_epoch)
    mlflow.log_metrics(metrics)
    for epoch, seconds in enumerate(result.epoch_seconds):
        mlflow.log_metric("epoch_seconds", seconds, step=epoch)
    for path in result.files.values():
        mlflow.log_artifact(str(path))
    for metric in ("loss", "accuracy"):
        figure = plots.curve_figure(result.history, metric)
        mlflow.log_figure(figure, f"{metric}-curve.png")
    mlflow.log_text(_history_csv(result.history), "history.csv")


def _history_csv(history: dict[str, list[float]]) -> str:
    import pandas as pd

    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", range(len(frame)))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def _log_model(model, splits: Splits) -> str:
    """Log the kept model as the run's one MLflow model, with signature and input example."""
    import keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    example = scale(splits.x_val[:3])
    signature = infer_signature(example, model.predict(example, verbose=0))
    # Explicit requirements skip MLflow's slow inference (it re-imports the model in a subprocess).
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    # MLflow checks the input example with predict(); keep its progress bar off the terminal.
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        info = mlflow.tensorflow.log_model(model, name=MODEL_NAME, signature=signature,
                                           input_example=example, pip_requirements=requirements)
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    return info.model_uri


def describe_error(error: BaseException) -> str:
    """The error as recorded in a run's ``fmtrain.error`` tag: its type and message."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"{type(error).__name__}: {error}"[:5000]



@contextlib.contextmanager
def not_found(message):
    """Turn the store's 'does not exist' into ValueError(message); other errors pass.

    ``message`` is text, or a function giving it, called only on failure (it may ask the store
    what does exist)."""
    try:
        yield
    except MlflowException as error:
        if error.error_code in MISSING_CODES:
            raise ValueError(message() if callable(message) else message) from None
        raise


def get_run(run_id: str):
    """The run ``run_id``; a ValueError naming the store when there is none."""
    with not_found(lambda: f"run {run_id!r} not found in {mlflow.get_tracking_uri()}"):
        return MlflowClient().get_run(run_id)


def is_input_error(error: BaseException) -> bool:
    """Bad input or an unusable store, met before any run existed (not a run that failed)."""
    return (isinstance(error, (ValueError, OSError, MlflowException))
            and not isinstance(error, TrackingError))


def describe_for_person(error: BaseException) -> str:
    """One line for a person: the first line of the message; an unreachable store by its URI."""
    text = str(getattr(error, "message", "") or error).strip() or type(error).__name__
    if "Max retries exceeded" in text or "Connection refused" in text:
        return (f"tracking store {mlflow.get_tracking_uri()} cannot be reached; start it or point "
                "MLFLOW_TRACKING_URI at one that runs")
    return text.splitlines()[0]
