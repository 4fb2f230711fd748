"""What a run records: params, metrics, artifacts, figures, its models (through the journal;
what a model is: ``logged_models``) and descriptions."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from fmtrain.learning import configs
from fmtrain.tracking import journal, logged_models
from fmtrain.tracking.names import (
    BEST_CONFIG_TAG,
    BEST_TAG,
    DESCRIPTION_TAG,
    RESUMED_RUN_TAG,
    SWEEP_CSV,
    SWEEP_FIGURE,
    SWEEP_MD,
)

# The run's single metrics that the experiment's Models page also shows for its logged model:
# the kept model's scores under the names the runs table and the sweep's summary use, and when
# training stopped. The others describe the run (timings, reload checks, epochs) or another model
# (the best checkpoint). The model gets its epoch's loss, accuracy, val_loss and val_accuracy
# from MLflow itself (see logged_models.log_models).
KEPT_MODEL_METRICS = ("final_val_loss", "final_val_accuracy", "stopped_epoch")


def epoch_logger(run_id: str):
    """The Keras callback that logs each epoch's metrics (step = epoch) and the model summary.

    A plain Keras callback, not MLflow's own (whose wrapper swallows every error, so that a
    store that is down silently loses epochs): each epoch goes to the store, or to the run's
    journal when the store cannot be reached (see ``journal``), and never waits on it. It logs
    the run's metrics only, not fit()'s arguments (fmtrain logs its settings itself, once, under
    one name each). It works on every Keras backend.
    """
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            lines = []
            self.model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
            log_text(run_id, "\n".join(lines), "model_summary.txt")

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                now = int(time.time() * 1000)
                journal.write(run_id, {"op": "batch", "metrics": [
                    [key, float(value), now, epoch, None] for key, value in logs.items()]})

    return EpochLogger()


def log_text(run_id: str, text: str, file_name: str) -> None:
    """``text`` as the run's artifact ``file_name`` (through the journal)."""
    with tempfile.TemporaryDirectory(prefix="fmtrain-text-") as folder:
        path = Path(folder) / Path(file_name).name
        path.write_text(text)
        log_file(run_id, path, str(Path(file_name).parent) if "/" in file_name else None)


def log_figure(run_id: str, figure, file_name: str) -> None:
    """A Matplotlib figure as the run's artifact ``file_name`` (through the journal)."""
    with tempfile.TemporaryDirectory(prefix="fmtrain-figure-") as folder:
        path = Path(folder) / file_name
        figure.savefig(path)
        log_file(run_id, path)


def log_file(run_id: str, path, artifact_path: str | None = None) -> None:
    """A local file as an artifact of the run (through the journal)."""
    journal.write(run_id, {"op": "artifact", "path": artifact_path}, files={"file": Path(path)})


def log_batch(run_id: str, metrics: dict[str, float] | None = None, *, step: int = 0,
              params: dict[str, str] | None = None, tags: dict[str, str] | None = None,
              model_id: str | None = None, through_journal: bool = True) -> None:
    """Metrics (at ``step``, linked to ``model_id``), params and tags in one write: through the
    run's journal, or (``through_journal=False``) to the store alone."""
    now = int(time.time() * 1000)
    entry = {"op": "batch", "metrics": [[k, float(v), now, step, model_id] for k, v in (metrics or {}).items()],
             "params": [[k, str(v)] for k, v in (params or {}).items()],
             "tags": [[k, str(v)] for k, v in (tags or {}).items()]}
    if through_journal:
        journal.write(run_id, entry)
    else:
        journal.apply(run_id, entry)


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
        log_batch(run_id, params=missing)


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
    log_batch(run_id, {k: v for k, v in metrics.items() if k in KEPT_MODEL_METRICS}, model_id=model_id,
              step=0)
    # Apart: a metric logged at the model's step (the kept epoch) with the model would be linked
    # to it, as if the run's timings described it.
    now = int(time.time() * 1000)
    run_only = [[k, float(v), now, 0, None] for k, v in metrics.items() if k not in KEPT_MODEL_METRICS]
    run_only += [["epoch_seconds", float(seconds), now, epoch, None]
                 for epoch, seconds in enumerate(result.epoch_seconds)]
    journal.write(run_id, {"op": "batch", "metrics": run_only})
    for path in result.files.values():
        log_file(run_id, path)
    for file_name, figure in figures.items():
        log_figure(run_id, figure, file_name)
    log_text(run_id, history_csv, "history.csv")


@dataclass(frozen=True)
class LoggedModel:
    """A logged model: its URI (``models:/m-...``) and its id, to link metrics to it."""

    uri: str
    model_id: str


def log_models(final: logged_models.ModelToLog, checkpoint: logged_models.ModelToLog | None, example, requirements: list[str],
               backend: str) -> LoggedModel:
    """Log the run's final model and its best checkpoint (``checkpoint``, if it kept one), with
    ``example`` (a few images) as input example; returns the final one.

    Call it right after training: MLflow links every metric the run holds at a model's step
    to it, and at this point those are that epoch's loss, accuracy, val_loss and val_accuracy.
    When the store cannot be reached, the models wait in the run's journal, logged when it is
    replayed. Each is logged once (``logged_models.log_classifier``).
    """
    import mlflow

    from fmtrain.tracking.store import fail_fast

    run_id = mlflow.active_run().info.run_id
    # Records of the run already waiting in its journal: the models go there too, in order,
    # with no time-outs spent on a store known to be away.
    logged, away = None, journal.opened_journal(run_id).pending
    for model in [final] + ([checkpoint] if checkpoint else []):
        if not away:
            try:
                with fail_fast():
                    # Explicit requirements skip MLflow's slow inference (it re-imports the model
                    # in a subprocess).
                    model_id = logged_models.log_classifier(model, example, requirements, backend, run_id)
                logged = logged or LoggedModel(f"models:/{model_id}", model_id)
                continue
            except Exception as error:
                if not journal.is_outage(error):
                    raise
                away = True
        _keep_in_journal(run_id, model, example, requirements, backend, final=model is final)
        logged = logged or LoggedModel(f"(in the journal of run {run_id}, until `fmtrain sync {run_id}`)",
                                       journal.JOURNAL_MODEL)
    return logged


def _keep_in_journal(run_id: str, model: logged_models.ModelToLog, example, requirements: list[str], backend: str,
                     *, final: bool) -> None:
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="fmtrain-model-") as folder:
        np.save(Path(folder) / "example.npy", example)
        journal.write(run_id, {"op": "model", "name": model.name, "step": model.step, "final": final,
                               "requirements": requirements, "backend": backend},
                      files={"file": model.keras_file, "example": Path(folder) / "example.npy"})



def describe_run(run_id: str, text: str) -> None:
    """Set the Markdown the run's page shows as its Description."""
    log_batch(run_id, tags={DESCRIPTION_TAG: text})


def point_to_resumed(project_run_id: str, resumed_run_id: str) -> None:
    """On the run ``mlflow run`` made for a command that resumed another run: which one it is."""
    log_batch(project_run_id, tags={RESUMED_RUN_TAG: resumed_run_id,
                                    DESCRIPTION_TAG: f"Resumed run {resumed_run_id}; its work went on in that run."})


def log_comparison(run_id: str, figure, csv_text: str, markdown: str, best, description: str) -> None:
    """Log a sweep's comparison figure, summary tables, description and best run on ``run_id``.

    The best child's final val_loss and val_accuracy become the parent's own metrics
    (``best_final_val_loss``, ``best_final_val_accuracy``), so that the parent is not an empty
    row in the runs table and the charts.
    """
    log_figure(run_id, figure, SWEEP_FIGURE)
    log_text(run_id, csv_text, SWEEP_CSV)
    log_text(run_id, markdown, SWEEP_MD)
    describe_run(run_id, description)
    if best is not None:
        log_batch(run_id, {"best_final_val_loss": best.final_val_loss,
                           "best_final_val_accuracy": best.final_val_accuracy},
                  tags={BEST_TAG: best.run_id, BEST_CONFIG_TAG: best.config})


def save_comparison(folder: Path, figure, csv_text: str, markdown: str) -> None:
    """A sweep's comparison as local files in ``folder``, named as its parent run logs them."""
    folder.mkdir(parents=True, exist_ok=True)
    figure.savefig(folder / SWEEP_FIGURE)
    (folder / SWEEP_CSV).write_text(csv_text)
    (folder / SWEEP_MD).write_text(markdown)


def log_search(run_id: str, *, texts: dict[str, str], figures: dict, metrics: dict[str, float],
               params: dict[str, str], best_run_id: str | None, description: str) -> None:
    """Log a search's results on its parent run ``run_id``: tables and the space (``texts``, by
    file name), figures, the best trial's params (new keys), metrics and run, and a description."""
    for name, text in texts.items():
        log_text(run_id, text, name)
    for name, figure in figures.items():
        log_figure(run_id, figure, name)
    log_batch(run_id, metrics, params=params, tags={BEST_TAG: best_run_id} if best_run_id else {})
    describe_run(run_id, description)


def log_report(run_id: str, file_name: str, markdown: str, figures: dict) -> None:
    """Log a report and its figures on ``run_id`` and show the report as the run's description."""
    log_text(run_id, markdown, file_name)
    for name, figure in figures.items():
        log_figure(run_id, figure, name)
    describe_run(run_id, markdown)
