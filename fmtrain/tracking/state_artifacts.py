"""A run's resumable state in the store: the artifacts under ``resume/``, and what a resume reads.

Each epoch's end writes the run's state (``learning.resume``) into its artifacts at ``resume/``:
``resume/state-0.npz`` and ``resume/state-1.npz``, written in turn (each epoch replaces the
older one). They go through the run's journal like its metrics, so that a store
that is away loses none of them. The tracking store is then the only storage a resume needs:
any machine can continue the run. A run that ends FINISHED has them removed (unless the user
keeps them).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from fmtrain.learning.training_state import STATE_FILES, TrainingState
from fmtrain.tracking import journal, logged, store
from fmtrain.tracking.names import DATA_CONTEXT_TAG, RESUME_DIR, RESUMES_TAG


@dataclass
class ResumePoint:
    """A run to continue and where it stood: its id, its state, and why it stopped."""

    run_id: str
    state: TrainingState
    reason: str  # the run's fmtrain.error, or why it is resumed
    metrics_logged: set[int]  # the epochs (steps) whose loss the run holds


def state_logger(run_id: str) -> Callable[[list[Path]], None]:
    """What each epoch's StateSaver hands its files to: the run's artifacts at ``resume/``."""

    def log(files: list[Path]) -> None:
        for path in files:
            logged.log_file(run_id, path, RESUME_DIR)

    return log


def download_state(run_id: str, folder: Path) -> TrainingState | None:
    """The state saved in run ``run_id``'s artifacts, downloaded into ``folder``; None if none."""
    client = MlflowClient()
    names = {Path(item.path).name for item in client.list_artifacts(run_id, RESUME_DIR)}
    # MLflow draws a progress bar of each download on the terminal unless told not to.
    with _environment(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
        for name in sorted(names & set(STATE_FILES)):
            client.download_artifacts(run_id, f"{RESUME_DIR}/{name}", str(folder))
    return TrainingState.latest(folder)


@contextlib.contextmanager
def _environment(**values):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def remove_state(run_id: str) -> None:
    """Delete the run's ``resume/`` artifacts (a run that ended FINISHED needs them no more)."""
    from fmtrain.tracking.mlflow_internals import delete_artifacts

    uri = MlflowClient().get_run(run_id).info.artifact_uri
    with store.fail_fast(), contextlib.suppress(FileNotFoundError):
        delete_artifacts(uri, RESUME_DIR)


def data_digests(run_id: str) -> dict[str, str]:
    """The digest of each split the run logged as a dataset input, by context (training, ...)."""
    run = MlflowClient().get_run(run_id)
    found = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        context = next((t.value for t in item.tags if t.key == DATA_CONTEXT_TAG), None)
        if context:
            found[context] = item.dataset.digest
    return found


def logged_epochs(run_id: str, key: str = "loss") -> set[int]:
    """The steps at which the run holds metric ``key`` (one per epoch logged)."""
    return {metric.step for metric in MlflowClient().get_metric_history(run_id, key)}


def before_continuing(run_id: str, point: ResumePoint) -> None:
    """In the reopened run: log the epochs that the state holds and the run does not (killed
    between saving the state and logging the epoch), and record the resume in ``fmtrain.resumes``
    (a JSON list of {at, why, from_epoch})."""
    now = int(time.time() * 1000)
    history, missing = point.state.history, [e for e in range(point.state.epoch)
                                             if e not in point.metrics_logged]
    if missing:
        journal.write(run_id, {"op": "batch", "metrics": [
            [key, float(values[epoch]), now, epoch, None]
            for epoch in missing for key, values in history.items() if epoch < len(values)]})
    tags = MlflowClient().get_run(run_id).data.tags
    resumes = json.loads(tags.get(RESUMES_TAG, "[]"))
    resumes.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "why": point.reason,
                    "from_epoch": point.state.epoch})
    logged.log_batch(run_id, tags={RESUMES_TAG: json.dumps(resumes)})


def resumes(tags: dict[str, str]) -> list[dict]:
    """The resumes a run's tags record, oldest first."""
    return json.loads(tags.get(RESUMES_TAG, "[]"))
