"""The MLflow boundary for training: runs, autologging, params, metrics, artifacts, the model.

The tracking store is ``MLFLOW_TRACKING_URI`` when set, otherwise MLflow's default
(``sqlite:///mlflow.db`` in the working directory). Under ``mlflow run`` the run already
exists (``MLFLOW_RUN_ID``) and holds the ``-P`` values as params: they are kept, and only the
resolved settings it lacks are added, so a param never changes value.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass

import mlflow
from mlflow.tracking import MlflowClient

from fmtrain import configs, plots
from fmtrain.configs import TrainConfig
from fmtrain.data import Splits, scale

DEFAULT_EXPERIMENT = "fashion-mnist"
CONFIG_TAG = "fmtrain.config"
ERROR_TAG = "fmtrain.error"
MODEL_NAME = "model"


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


def train_run(config: TrainConfig, name: str, splits: Splits, *, register_as: str | None = None,
              verbose: int = 0, nested: bool = False, tags: dict | None = None) -> RunOutcome:
    """Train ``config`` inside one MLflow run and log everything a user compares or reloads.

    A failure inside leaves the run FAILED with the error as the tag ``fmtrain.error``.
    """
    from fmtrain import training  # TensorFlow is imported only when a run really trains

    with mlflow.start_run(run_name=name, nested=nested, tags={CONFIG_TAG: name, **(tags or {})}) as run:
        client = MlflowClient()
        try:
            mlflow.set_tag("mlflow.runName", name)
            log_params(client, run.info.run_id, {"config": name, **config.to_params(),
                                                 "data_source": splits.source,
                                                 "train_size": str(len(splits.y_train)),
                                                 "val_size": str(len(splits.y_val))})
            # The tensorflow flavor is the one that logs stopped_epoch/restored_epoch. Models,
            # checkpoints and datasets are left out here: fmtrain logs the kept model once
            # itself, with the chapter's own best checkpoint, and per-epoch work stays light.
            mlflow.tensorflow.autolog(log_models=False, checkpoint=False, log_datasets=False)
            with tempfile.TemporaryDirectory(prefix="fmtrain-") as workdir:
                result = training.train(config, splits, workdir, verbose=verbose)
                _log_result(client, run.info.run_id, result, splits)
            model_uri = _log_model(result.model, splits)
        except BaseException as error:
            mlflow.set_tag(ERROR_TAG, describe_error(error))
            raise
        finally:
            mlflow.tensorflow.autolog(disable=True)
    version = None
    if register_as:
        from fmtrain import registry

        version = registry.register(run.info.run_id, register_as).version
    return RunOutcome(run.info.run_id, result, model_uri, version)


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


def _log_result(client: MlflowClient, run_id: str, result, splits: Splits) -> None:
    metrics = dict(result.metrics)
    # Autolog logs stopped_epoch only when EarlyStopping stopped training; fmtrain logs it for
    # every run (the last epoch trained, 0-based) so runs compare side by side.
    if "stopped_epoch" not in client.get_run(run_id).data.metrics:
        metrics["stopped_epoch"] = float(result.stopped_epoch)
    mlflow.log_metrics(metrics)
    for epoch, seconds in enumerate(result.epoch_seconds):
        mlflow.log_metric("epoch_seconds", seconds, step=epoch)
    for key, path in result.files.items():
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
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return f"{type(error).__name__}: {error}"[:5000]


def last_run_id() -> str | None:
    """The id of the run this process ended last (a child that just failed, say)."""
    run = mlflow.last_active_run()
    return run.info.run_id if run else None
