"""Read finished runs back from the tracking store, as plain records for comparison."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from fmtrain.tracking.runs import CONFIG_TAG, ERROR_TAG, get_run

CURVES = ("loss", "val_loss")


def child_run_ids(parent_run_id: str) -> list[str]:
    """The nested runs of ``parent_run_id``, oldest first (the order the sweep ran them)."""
    client = MlflowClient()
    parent = get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"], max_results=1000)
    return [run.info.run_id for run in children]


def fetch_records(run_ids: list[str]) -> list[dict]:
    """One record per run: name, run_id, status, error, params, metrics, seconds, and the
    per-epoch ``loss`` and ``val_loss`` lists. Raises ValueError for an unknown run id."""
    client = MlflowClient()
    records = []
    for run_id in run_ids:
        run = get_run(run_id)
        curves = {key: [m.value for m in sorted(client.get_metric_history(run_id, key),
                                                 key=lambda m: (m.step, m.timestamp))
                        if m.step < _epochs(run)]
                  for key in CURVES}
        end = run.info.end_time or run.info.start_time
        records.append({
            "name": run.data.tags.get(CONFIG_TAG, run.info.run_name),
            "run_id": run_id,
            "status": run.info.status,
            "error": run.data.tags.get(ERROR_TAG, ""),
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "seconds": (end - run.info.start_time) / 1000.0,
            **curves,
        })
    return records


def _epochs(run) -> float:
    # Autolog adds the restored epoch's metrics one step past stopped_epoch; the curves stop at
    # the epochs really trained.
    return run.data.metrics.get("epochs_run", float("inf"))

