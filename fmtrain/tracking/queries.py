"""Typed records read back from the store, for comparison, reports, reaping and resumed sweeps.

Every search here pages through all its results (MLflow's ``page_token``), and each command reads
a run once: the records come from the search's own results, not from a second ``get_run`` each.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from fmtrain.learning.scores import Scores
from fmtrain.tracking.names import CONFIG_TAG, ERROR_TAG, HEARTBEAT_TAG, PARENT_TAG, SWEEP_PARAMS
from fmtrain.tracking.store import get_run

CURVES = ("loss", "val_loss")
# Runs per search request: MLflow's default page, about 1 MB of JSON for fmtrain's runs.
PAGE_SIZE = 1000


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
    tags: dict[str, str] = field(default_factory=dict)
    started: float = 0.0  # Unix seconds

    def metric(self, key: str) -> float | None:
        return self.metrics.get(key)

    @property
    def scores(self) -> Scores:
        """The run's single scores as a typed record."""
        return Scores.from_metrics(self.metrics)


@dataclass
class RunState:
    """Where a run stands: enough to find runs left RUNNING and to resume a sweep."""

    run_id: str
    name: str
    experiment_id: str
    status: str
    started: float  # Unix seconds
    last_sign_of_life: float  # the heartbeat, or the start when there is none
    params: dict[str, str]
    tags: dict[str, str]

    @property
    def config(self) -> str:
        return self.tags.get(CONFIG_TAG, self.name)

    @property
    def shared_settings(self) -> dict[str, str]:
        """A sweep parent's params that are settings its children share (not SWEEP_PARAMS)."""
        return {key: value for key, value in self.params.items() if key not in SWEEP_PARAMS}


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


def _children(parent_run_id: str, extra_filter: str = "") -> list:
    parent = get_run(parent_run_id)
    wanted = f"tags.`{PARENT_TAG}` = '{parent_run_id}'" + (f" and {extra_filter}" if extra_filter else "")
    return list(search_all([parent.info.experiment_id], wanted))


def _record(run, client: MlflowClient | None = None) -> RunRecord:
    """A record of ``run``; with ``client``, its per-epoch curves too (one request per curve)."""
    end = run.info.end_time or run.info.start_time
    record = RunRecord(
        name=run.data.tags.get(CONFIG_TAG, run.info.run_name), run_id=run.info.run_id,
        status=run.info.status, error=run.data.tags.get(ERROR_TAG, ""), params=dict(run.data.params),
        metrics=dict(run.data.metrics), seconds=(end - run.info.start_time) / 1000.0,
        tags=dict(run.data.tags), started=run.info.start_time / 1000.0)
    return with_curves([record], client)[0] if client is not None else record


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


def fetch_records(run_ids: list[str]) -> list[RunRecord]:
    """One record per run, with its per-epoch ``loss`` and ``val_loss``.

    Raises ValueError for an unknown run id.
    """
    client = MlflowClient()
    return [_record(get_run(run_id), client) for run_id in run_ids]


def child_records(parent_run_id: str) -> list[RunRecord]:
    """Records of a parent's nested runs, oldest first, without their curves (``with_curves``)."""
    return [_record(run) for run in _children(parent_run_id)]


def child_run_ids(parent_run_id: str) -> list[str]:
    """The nested runs of ``parent_run_id``, oldest first (the order the sweep ran them)."""
    return [run.info.run_id for run in _children(parent_run_id)]


def _state(run) -> RunState:
    started = run.info.start_time / 1000.0
    beat = run.data.tags.get(HEARTBEAT_TAG)
    return RunState(run.info.run_id, run.info.run_name, run.info.experiment_id, run.info.status,
                    started, float(beat) if beat else started, dict(run.data.params),
                    dict(run.data.tags))


def run_state(run_id: str) -> RunState:
    """The state of one run; ValueError when there is none."""
    return _state(get_run(run_id))


def child_states(parent_run_id: str, tags: dict[str, str] | None = None) -> list[RunState]:
    """The states of a parent's nested runs, oldest first; with ``tags``, only those with these
    tag values."""
    wanted = " and ".join(f"tags.`{key}` = '{value}'" for key, value in (tags or {}).items())
    return [_state(run) for run in _children(parent_run_id, wanted)]


def running_runs(experiment: str | None = None) -> list[RunState]:
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
    return [_state(run) for run in search_all(ids, "attributes.status = 'RUNNING'", client)]


def test_accuracies(run_ids: list[str]) -> dict[str, float]:
    """Test accuracy of each run whose model an evaluation run scored (the latest evaluation)."""
    client = MlflowClient()
    found: dict[str, float] = {}
    wanted = set(run_ids)
    if not wanted:
        return found
    experiments = _experiment_ids(client)  # evaluations go anywhere
    for run in search_all(experiments, "params.source_run_id != 'none'", client):
        source = run.data.params.get("source_run_id")
        if source in wanted and "test_accuracy" in run.data.metrics:
            found[source] = run.data.metrics["test_accuracy"]
    return found
