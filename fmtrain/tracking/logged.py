"""What a run records: params, metrics, artifacts, figures, the logged model and descriptions."""

from __future__ import annotations

import time
from dataclasses import dataclass

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from fmtrain.learning import configs
from fmtrain.tracking.names import (
    BEST_CONFIG_TAG,
    BEST_TAG,
    DESCRIPTION_TAG,
    PER_CLASS_FILE,
    SWEEP_CSV,
    SWEEP_FIGURE,
    SWEEP_MD,
)

# The run's single metrics that the experiment's Models page also shows for its logged model:
# the kept model's scores under the names the runs table and the sweep's summary use, and when
# training stopped. The others describe the run (timings, reload checks, epochs) or another model
# (the best checkpoint). The model gets its epoch's loss, accuracy, val_loss and val_accuracy
# from MLflow itself (see log_model).
KEPT_MODEL_METRICS = ("final_val_loss", "final_val_accuracy", "stopped_epoch")


def epoch_logger():
    """The Keras callback that logs each epoch's metrics (step = epoch) and the model summary.

    It is MLflow's own Keras callback, the one ``mlflow.keras.autolog()`` installs, without
    autolog's extras, measured on a real run before choosing: autolog also logs fit()'s
    arguments (26 params, ``batch_size=None`` and ``validation_split=0.0`` contradicting the
    run's own ``batch_size`` and ``validation``, which makes MLflow refuse the param and autolog
    silently log nothing) and a ``validation_*`` copy of every ``val_*`` metric. fmtrain logs its
    settings itself, once, under one name each. It works on every Keras backend.
    """
    from mlflow.keras.callback import MlflowCallback

    class EpochLogger(MlflowCallback):
        def on_train_begin(self, logs=None):
            lines = []
            self.model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
            mlflow.log_text("\n".join(lines), "model_summary.txt")

        def on_epoch_end(self, epoch, logs=None):
            # Synchronous: when fit() returns, every epoch is in the store, and a store that
            # is down is waited for (with MLflow's retries) rather than silently dropped.
            if logs:
                mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch)

        def on_test_end(self, logs=None):
            pass  # the val_* metrics of on_epoch_end already hold these values

    return EpochLogger()


def log_params(run_id: str, params: dict[str, str]) -> None:
    """Log ``params`` once: keys the run already holds (from ``mlflow run -P``) must mean the
    same value and are left as they are; a contradiction is a ValueError."""
    existing = MlflowClient().get_run(run_id).data.params
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


def log_training(run_id: str, result, figures: dict, model_id: str, history_csv: str) -> None:
    """Log a TrainResult's metrics, per-epoch seconds, files, figures and history table (CSV text).

    The metrics of the kept model are linked to its logged model ``model_id`` too.
    """
    metrics = {**result.metrics, "stopped_epoch": float(result.stopped_epoch)}
    mlflow.log_metrics({k: v for k, v in metrics.items() if k in KEPT_MODEL_METRICS}, model_id=model_id)
    # Through the client: MLflow's fluent API would link a metric logged at the model's step
    # (the kept epoch) to the model, as if the run's timings described it.
    now = int(time.time() * 1000)
    run_only = [Metric(k, v, now, 0) for k, v in metrics.items() if k not in KEPT_MODEL_METRICS]
    run_only += [Metric("epoch_seconds", seconds, now, epoch)
                 for epoch, seconds in enumerate(result.epoch_seconds)]
    MlflowClient().log_batch(run_id, metrics=run_only)
    for path in result.files.values():
        mlflow.log_artifact(str(path))
    for file_name, figure in figures.items():
        mlflow.log_figure(figure, file_name)
    mlflow.log_text(history_csv, "history.csv")


@dataclass(frozen=True)
class LoggedModel:
    """A logged model: its URI (``models:/m-...``) and its id, to link metrics to it."""

    uri: str
    model_id: str


def log_model(model, example, requirements: list[str], *, name: str, step: int) -> LoggedModel:
    """Log the kept Keras model as the run's one MLflow model (keras flavor, with signature).

    ``name`` is what the experiment's Models page lists and what ``runs:/RUN_ID/NAME`` loads;
    ``step`` is the epoch whose weights the model holds. Call it right after training: MLflow
    links every metric the run holds at ``step`` to the model (with its default step, 0, the
    Models page showed the first epoch's loss as the model's), and at this point those are that
    epoch's loss, accuracy, val_loss and val_accuracy. The keras flavor saves the native
    ``.keras`` file, which loads on any Keras backend, so a model trained on TensorFlow serves
    on JAX and back.
    """
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    # Explicit requirements skip MLflow's slow inference (it re-imports the model in a subprocess).
    info = mlflow.keras.log_model(model, name=name, signature=signature,
                                  pip_requirements=requirements, step=step)
    return LoggedModel(info.model_uri, info.model_id)


def describe_run(run_id: str, text: str) -> None:
    """Set the Markdown the run's page shows as its Description."""
    MlflowClient().set_tag(run_id, DESCRIPTION_TAG, text)


def log_comparison(run_id: str, figure, csv_text: str, markdown: str, best, description: str) -> None:
    """Log a sweep's comparison figure, summary tables, description and best run on ``run_id``.

    The best child's final val_loss and val_accuracy become the parent's own metrics
    (``best_final_val_loss``, ``best_final_val_accuracy``), so that the parent is not an empty
    row in the runs table and the charts.
    """
    client = MlflowClient()
    client.log_figure(run_id, figure, SWEEP_FIGURE)
    client.log_text(run_id, csv_text, SWEEP_CSV)
    client.log_text(run_id, markdown, SWEEP_MD)
    describe_run(run_id, description)
    if best is not None:
        client.set_tag(run_id, BEST_TAG, best.run_id)
        client.set_tag(run_id, BEST_CONFIG_TAG, best.config)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[
            Metric("best_final_val_loss", best.final_val_loss, now, 0),
            Metric("best_final_val_accuracy", best.final_val_accuracy, now, 0)])


def log_search(run_id: str, *, texts: dict[str, str], figures: dict, metrics: dict[str, float],
               params: dict[str, str], tags: dict[str, str], description: str) -> None:
    """Log a search's results on its parent run ``run_id``: tables and the space (``texts``, by
    file name), figures, the best trial's params (new keys) and metrics, tags and description."""
    client = MlflowClient()
    for name, text in texts.items():
        client.log_text(run_id, text, name)
    for name, figure in figures.items():
        client.log_figure(run_id, figure, name)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
                     params=[Param(key, value) for key, value in params.items()],
                     tags=[RunTag(key, value) for key, value in tags.items()])
    describe_run(run_id, description)


def log_evaluation(metrics: dict[str, float], per_class_csv: str, figures: dict,
                   model_id: str | None = None) -> None:
    """Log test-set results on the active run, linked to the logged model ``model_id`` if known
    (the experiment's Models page then shows them beside its validation metrics)."""
    mlflow.log_metrics(metrics, model_id=model_id)
    mlflow.log_text(per_class_csv, PER_CLASS_FILE)
    for file_name, figure in figures.items():
        mlflow.log_figure(figure, file_name)


def log_report(run_id: str, file_name: str, markdown: str, figures: dict) -> None:
    """Log a report and its figures on ``run_id`` and show the report as the run's description."""
    client = MlflowClient()
    client.log_text(run_id, markdown, file_name)
    for name, figure in figures.items():
        client.log_figure(run_id, figure, name)
    describe_run(run_id, markdown)
