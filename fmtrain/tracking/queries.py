"""Typed records read back from the store, for comparison, reports and resumed sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from fmtrain.tracking.names import CONFIG_TAG, ERROR_TAG, PARENT_TAG
from fmtrain.tracking.store import get_run

CURVES = ("loss", "val_loss")


@dataclass
class RunRecord:
    """One run as the store holds it: what comparison needs, and nothing of MLflow's types."""

    name: str
    run_id: str
    status: str
    error: str
    params: dict[str, str]
    metrics: dict[str, float]
    seconds: float
    curves: dict[str, list[float]] = field(default_factory=dict)

    def metric(self, key: str) -> float | None:
        return self.metrics.get(key)


def child_run_ids(parent_run_id: str) -> list[str]:
    """The nested runs of ``parent_run_id``, oldest first (the order the sweep ran them)."""
    parent = get_run(parent_run_id)
    children = MlflowClient().search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"], max_results=5000)
    return [run.info.run_id for run in children]


def fetch_records(run_ids: list[str]) -> list[RunRecord]:
    """One record per run, with its per-epoch ``loss`` and ``val_loss``.

    Raises ValueError for an unknown run id.
    """
    client = MlflowClient()
    records = []
    for run_id in run_ids:
        run = get_run(run_id)
        epochs = run.data.metrics.get("epochs_run", float("inf"))
        curves = {key: [m.value for m in sorted(client.get_metric_history(run_id, key),
                                                 key=lambda m: (m.step, m.timestamp))
                        if m.step < epochs]
                  for key in CURVES}
        end = run.info.end_time or run.info.start_time
        records.append(RunRecord(
            name=run.data.tags.get(CONFIG_TAG, run.info.run_name),
            run_id=run_id,
            status=run.info.status,
            error=run.data.tags.get(ERROR_TAG, ""),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            seconds=(end - run.info.start_time) / 1000.0,
            curves=curves,
        ))
    return records
