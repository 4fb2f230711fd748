"""The MLflow side of a sweep: the parent run, failed children, and the parent's comparison."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from fmtrain import comparison
from fmtrain.tracking.runs import CONFIG_TAG, ERROR_TAG, describe_error, tracked_run

SWEEP_TAG = "fmtrain.sweep.configs"
BEST_TAG = "fmtrain.best_run_id"
BEST_CONFIG_TAG = "fmtrain.best_config"
FIGURE_FILE = "sweep-val-loss.png"
TABLE_CSV = "sweep-summary.csv"
TABLE_MD = "sweep-summary.md"


def parent_run(names: list[str], requested: str, overrides: dict[str, str]):
    """A parent run tagged with the sweep's configurations; a context manager yielding its id.

    ``requested`` is the configurations as the user gave them (``all``, say): under
    ``mlflow run -e sweep`` MLflow has logged that text as the param ``configs`` already.
    """
    return tracked_run("sweep", {"configs": requested, **overrides}, tags={SWEEP_TAG: ",".join(names)})


def failed_child(name: str, error: BaseException) -> str:
    """A nested run for a configuration that could not start, marked FAILED with its error."""
    with mlflow.start_run(run_name=name, nested=True, tags={CONFIG_TAG: name}) as run:
        mlflow.set_tag(ERROR_TAG, describe_error(error))
        mlflow.end_run("FAILED")
    return run.info.run_id


def log_comparison(run_id: str, figure, rows: list[dict]) -> None:
    """Log the comparison figure, the summary tables and the best of ``rows`` on ``run_id``."""
    client = MlflowClient()
    client.log_figure(run_id, figure, FIGURE_FILE)
    client.log_text(run_id, comparison.to_csv(rows), TABLE_CSV)
    client.log_text(run_id, comparison.to_markdown(rows), TABLE_MD)
    best = comparison.best_row(rows)
    if best:
        client.set_tag(run_id, BEST_TAG, best["run_id"])
        client.set_tag(run_id, BEST_CONFIG_TAG, best["config"])
