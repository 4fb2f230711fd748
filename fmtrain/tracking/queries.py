"""Runs read back from the store as typed records (``records.RunRecord``), for comparison,
reports, reaping, resuming and settling.

Every search here pages through all its results (MLflow's ``page_token``), and each command reads
a run once: the records come from the search's own results, not from a second ``get_run`` each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from mlflow.tracking import MlflowClient

from fmtrain.learning import configs
from fmtrain.tracking import names
from fmtrain.tracking.records import Ending, Labels, RunRecord
from fmtrain.tracking.store import get_run

CURVES = ("loss", "val_loss")
# Runs per search request: MLflow's default page, about 1 MB of JSON for fmtrain's runs.
PAGE_SIZE = 1000
_SETTINGS = {knob.name for knob in configs.knobs()}


def search_all(experiment_ids: list[str], filter_string: str = "",
               client: MlflowClient | None = None) -> Iterator:
    """Every run of ``experiment_ids`` that ``filter_string`` matches, oldest first, page by page."""
    client = client or MlflowClient()
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string,
                                  order_by=["attributes.start_time ASC"], max_results=PAGE_SIZE,
                                  page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _experiment_ids(client: MlflowClient) -> list[str]:
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=PAGE_SIZE, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def record_of(run) -> RunRecord:
    """An MLflow run as a record (without its curves: ``with_curves``)."""
    tags, info = dict(run.data.tags), run.info
    end = info.end_time or int(time.time() * 1000)
    started = info.start_time / 1000.0
    beat = tags.get(names.HEARTBEAT_TAG)
    pruned = tags.get(names.PRUNED_EPOCH_TAG)
    params = dict(run.data.params)
    return RunRecord(
        run_id=info.run_id, name=info.run_name or "", experiment_id=info.experiment_id, status=info.status,
        started=started, seconds=(end - info.start_time) / 1000.0,
        last_sign_of_life=float(beat) if beat else started, labels=Labels.from_tags(tags),
        parent_id=tags.get(names.PARENT_TAG), ending=Ending.from_tags(tags),
        settings={key: value for key, value in params.items() if key in _SETTINGS}, params=params,
        metrics=dict(run.data.metrics), resumes=json.loads(tags.get(names.RESUMES_TAG, "[]")),
        stopped_by=tags.get(names.STOPPED_BY_TAG, ""), pruned_epoch=int(pruned) if pruned else None,
        tags=tags)


def with_curves(records: list[RunRecord], client: MlflowClient | None = None) -> list[RunRecord]:
    """``records`` with their per-epoch ``loss`` and ``val_loss`` read from the store (only the
    curves a run has: a run that logged no epoch costs no request)."""
    client = client or MlflowClient()
    for record in records:
        epochs = record.metrics.get("epochs_run", float("inf"))
        record.curves = {key: [m.value for m in sorted(client.get_metric_history(record.run_id, key),
                                                        key=lambda m: (m.step, m.timestamp))
                               if m.step < epochs] if key in record.metrics else []
                         for key in CURVES}
    return records


def run_record(run_id: str) -> RunRecord:
    """One run; ValueError naming the store when there is none."""
    return record_of(get_run(run_id))


def fetch_records(run_ids: list[str]) -> list[RunRecord]:
    """One record per run, with its per-epoch ``loss`` and ``val_loss``; ValueError for an unknown
    run id."""
    return with_curves([run_record(run_id) for run_id in run_ids])


def children(parent_run_id: str, *, job: str | None = None, trial: int | None = None) -> list[RunRecord]:
    """The nested runs of ``parent_run_id``, oldest first (the order they started); with ``job``
    or ``trial``, only the runs of that job or trial."""
    parent = get_run(parent_run_id)
    wanted = [f"tags.`{names.PARENT_TAG}` = '{parent_run_id}'"]
    if job is not None:
        wanted.append(f"tags.`{names.JOB_TAG}` = '{job}'")
    if trial is not None:
        wanted.append(f"tags.`{names.TRIAL_TAG}` = '{trial}'")
    return [record_of(run) for run in search_all([parent.info.experiment_id], " and ".join(wanted))]


def running_runs(experiment: str | None = None) -> list[RunRecord]:
    """The runs marked RUNNING in ``experiment`` (by name), or in every experiment."""
    client = MlflowClient()
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ValueError(f"no experiment named {experiment!r} in the store")
        ids = [found.experiment_id]
    else:
        ids = _experiment_ids(client)
    if not ids:
        return []
    return [record_of(run) for run in search_all(ids, "attributes.status = 'RUNNING'", client)]


def test_accuracies(run_ids: list[str]) -> dict[str, float]:
    """Test accuracy of each run whose model an evaluation run scored (the latest evaluation):
    MLflow's accuracy_score, or test_accuracy in an evaluation by fmtrain 0.2."""
    client = MlflowClient()
    found: dict[str, float] = {}
    wanted = set(run_ids)
    if not wanted:
        return found
    experiments = _experiment_ids(client)  # evaluations go anywhere
    for run in search_all(experiments, "params.source_run_id != 'none'", client):
        source, metrics = run.data.params.get("source_run_id"), run.data.metrics
        accuracy = metrics.get("accuracy_score", metrics.get("test_accuracy"))
        if source in wanted and accuracy is not None:
            found[source] = accuracy
    return found
