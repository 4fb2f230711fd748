"""Typed records read back from the store, for comparison, reports and resumed sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from fmtrain.learning.scores import Scores
from fmtrain.tracking.names import CONFIG_TAG, ERROR_TAG, HEARTBEAT_TAG, PARENT_TAG, SWEEP_PARAMS
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
    tags: dict[str, str] = field(default_factory=dict)

    def metric(self, key: str) -> float | None:
        return self.metrics.get(key)

    @property
    def scores(self) -> Scores:
        """The run's single scores as a typed record."""
        return Scores.from_metrics(self.metrics)


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
            tags=dict(run.data.tags),
        ))
    return records


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


def _state(run) -> RunState:
    started = run.info.start_time / 1000.0
    beat = run.data.tags.get(HEARTBEAT_TAG)
    return RunState(run.info.run_id, run.info.run_name, run.info.experiment_id, run.info.status,
                    started, float(beat) if beat else started, dict(run.data.params),
                    dict(run.data.tags))


def run_state(run_id: str) -> RunState:
    """The state of one run; ValueError when there is none."""
    return _state(get_run(run_id))


def child_states(parent_run_id: str) -> list[RunState]:
    """The states of a parent's nested runs, oldest first."""
    client = MlflowClient()
    return [_state(client.get_run(run_id)) for run_id in child_run_ids(parent_run_id)]


def running_runs(experiment: str | None = None) -> list[RunState]:
    """The runs marked RUNNING in ``experiment`` (by name), or in every experiment."""
    client = MlflowClient()
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ValueError(f"no experiment named {experiment!r} in the store")
        ids = [found.experiment_id]
    else:
        ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return []
    runs = client.search_runs(ids, filter_string="attributes.status = 'RUNNING'",
                              order_by=["attributes.start_time ASC"], max_results=5000)
    return [_state(run) for run in runs]


def test_accuracies(run_ids: list[str]) -> dict[str, float]:
    """Test accuracy of each run whose model an evaluation run scored (the latest evaluation)."""
    client = MlflowClient()
    found: dict[str, float] = {}
    wanted = set(run_ids)
    if not wanted:
        return found
    experiments = [e.experiment_id for e in client.search_experiments()]  # evaluations go anywhere
    evaluations = client.search_runs(experiments, filter_string="params.source_run_id != 'none'",
                                     order_by=["attributes.start_time ASC"], max_results=5000)
    for run in evaluations:
        source = run.data.params.get("source_run_id")
        if source in wanted and "test_accuracy" in run.data.metrics:
            found[source] = run.data.metrics["test_accuracy"]
    return found
