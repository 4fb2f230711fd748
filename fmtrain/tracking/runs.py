"""Run lifecycle: start (or resume under ``mlflow run``), heartbeat, and end with a true status.

A run ends FINISHED when its block completes, FAILED with the error in the tag ``fmtrain.error``
when the block raises, KILLED when SIGTERM or SIGHUP stopped it (FAILED for Ctrl-C, as MLflow
itself does). Whatever the error, the one raised afterwards names the run.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import mlflow
from mlflow.tracking import MlflowClient

from fmtrain.errors import RunFailed, RunStopped, StoreError, one_line
from fmtrain.tracking import journal, ledger, logged, lost_runs, monitoring, store
from fmtrain.tracking.names import (
    END_CAUSE_TAG,
    ERROR_TAG,
    HEARTBEAT_TAG,
    PRUNED_EPOCH_TAG,
    PRUNED_TAG,
    STOPPED_BY_TAG,
)
from fmtrain.tracking.records import Cause, Ending, Labels, ending_for
from fmtrain.tracking.store_errors import Fault, classify


def heartbeat_seconds() -> float:
    """How often a RUNNING run's heartbeat tag is refreshed (``FMTRAIN_HEARTBEAT_SECONDS``)."""
    return float(os.environ.get("FMTRAIN_HEARTBEAT_SECONDS", "30"))


PERMISSION_RETRY_SECONDS = 5.0


@contextlib.contextmanager
def tracked_run(name: str, params: dict[str, str], *, labels: Labels | None = None,
                parent_run_id: str | None = None, description: str | None = None,
                run_id: str | None = None, system_metrics: float = 0.0):
    """Open (or, under ``mlflow run``, resume) a run named ``name`` holding ``params``, labelled with
    ``labels``; yield its id.

    ``description`` is the Markdown the run's page shows (the tag ``mlflow.note.content``).
    ``system_metrics``: seconds between samples of the machine's use (``tracking.monitoring``);
    0 for none.

    An error inside ends the run FAILED and is raised again as RunFailed naming the run; a stop
    by signal ends it KILLED (FAILED for Ctrl-C) and is raised as RunStopped. With ``run_id``,
    that existing run is reopened (a resumed sweep's parent, a resumed run). With ``parent_run_id``, the run is
    nested under that run, in its experiment: the parent may be open in this process (a
    sequential sweep) or in another one (a sweep's driver, when this is a Ray worker).
    """
    monitor = monitoring.start_arguments(system_metrics)
    if run_id is not None:
        # A child reopened while its sweep's parent is open in this process nests under it.
        run = store.reopen(run_id, description=description, nested=mlflow.active_run() is not None, **monitor)
        for key in (ERROR_TAG, END_CAUSE_TAG):  # why it stopped last time is history now
            if key in run.data.tags:
                MlflowClient().delete_tag(run_id, key)
    elif parent_run_id is not None:
        experiment_id = store.get_run(parent_run_id).info.experiment_id
        run = _start_run(run_name=name, nested=True, parent_run_id=parent_run_id,
                         experiment_id=experiment_id, tags=(labels or Labels()).tags(),
                         description=description, **monitor)
    else:
        run = _start_run(run_name=name, tags=(labels or Labels()).tags(), description=description, **monitor)
    run_id = run.info.run_id
    ledger.opened(run_id, name)
    journal.opened(run_id)
    heartbeat = None
    try:
        logged.log_batch(run_id, tags=lost_runs.process_tags())
        heartbeat = _Heartbeat(run_id)
        logged.log_params(run_id, params)
        yield run_id
    except BaseException as error:
        if heartbeat is not None:
            heartbeat.stop()
        raise _end_badly(run_id, name, error) from error
    heartbeat.stop()
    waiting, problem = _end(run_id, "FINISHED", None)
    if waiting is not None:
        raise RunFailed(f"run {run_id} ({name}) ran to its end, but {_waiting_text(run_id, waiting)}",
                        run_id)
    if problem:
        raise RunFailed(f"run {run_id} ({name}) ran to its end, but {problem}", run_id)


def _waiting_text(run_id: str, waiting: journal.Journal) -> str:
    return (f"the tracking store {store.tracking_uri()} could not be reached to record all of it; "
            f"its records wait in {waiting.folder}: run `fmtrain sync {run_id}` once the store is back")


def _end(run_id: str, status: str, ending: Ending | None) -> tuple[journal.Journal | None, str]:
    """End the run open in this process as ``status`` (with ``ending``'s tags): the end is written
    once, after every record. When records wait in the run's journal, or the store does not take
    the end, the end joins the journal, and the store is waited for (end_wait_seconds()).
    Returns the journal when records still wait in it (the run stays RUNNING in the store), and
    what the store refused, if anything."""
    waiting = journal.opened_journal(run_id)
    end = {"op": "end", "status": status, "tags": sorted((ending.tags() if ending else {}).items())}
    if not waiting.pending:
        problem, away = _end_now(run_id, status, ending)
        if not away:
            _forget_active(run_id)
            journal.closed(run_id)
            waiting.remove()
            return None, problem
    _forget_active(run_id)  # before the end is replayed: MLflow's own end of it would write RUNNING
    journal.closed(run_id)
    try:
        waiting.append(end)
    except OSError as error:
        return None, (f"its end could not be recorded: the tracking store {store.tracking_uri()} could not "
                      f"be reached and its journal could not be written ({error.strerror}: {error.filename})")
    wait = journal.end_wait_seconds()
    print(f"run {run_id}: waiting up to {wait:.0f} s for the tracking store {store.tracking_uri()} "
          "to take its records", flush=True)
    deadline = time.monotonic() + wait
    try:
        while waiting.pending and not waiting.replay() and time.monotonic() < deadline:
            time.sleep(journal.probe_seconds())
    except Exception as error:  # noqa: BLE001 - a refused record must not keep the run open
        return None, f"the store refused a record of its journal: {one_line(error)}"
    if waiting.pending:
        return waiting, ""
    waiting.remove()
    return None, ""


def _end_now(run_id: str, status: str, ending: Ending | None) -> tuple[str, bool]:
    """Write the run's end to the store; returns what the store refused, and whether it was away.

    Recording the end must not hide the error or hang for MLflow's minutes of retries when the
    store itself is what failed: a short try, and the original error is raised either way."""
    problem = ""
    with store.fail_fast():
        if ending is not None:
            try:
                logged.log_batch(run_id, tags=ending.tags(), through_journal=False)
            except Exception as error:  # noqa: BLE001 - the original error matters more
                if journal.is_outage(error):
                    return "", True
                problem = f"the store could not record this: {one_line(error)}"
        try:
            if _is_active(run_id):
                mlflow.end_run(status)
            else:
                MlflowClient().set_terminated(run_id, status)
        except Exception as error:  # noqa: BLE001
            if journal.is_outage(error) and not problem:
                return "", True
            problem = problem or f"the store could not record this: {one_line(error)}"
    return problem, False


def _is_active(run_id: str) -> bool:
    active = mlflow.active_run()
    return active is not None and active.info.run_id == run_id


def _forget_active(run_id: str) -> None:
    """Take the run off MLflow's stack of active runs without ending it (MLflow would end it
    FINISHED when the process exits): popped by ``end_run``, whose write of RUNNING changes
    nothing, or fails with the store away."""
    if _is_active(run_id):
        with store.fail_fast(), contextlib.suppress(Exception):
            mlflow.end_run("RUNNING")


def _start_run(**arguments):
    """``mlflow.start_run``, tried again for a few seconds while the store denies permission.

    MLflow's basic-auth app grants the creator of an experiment its permission only after
    answering the creation: another process of the same user that finds the new experiment in
    that moment (several ``fmtrain train`` started at once) is refused its run. A refusal that
    lasts is a StoreError naming the store and what to ask for.
    """
    deadline = time.monotonic() + PERMISSION_RETRY_SECONDS
    while True:
        try:
            return mlflow.start_run(**arguments)
        except Exception as error:
            if classify(error) is not Fault.FORBIDDEN:
                raise
            if time.monotonic() > deadline:
                raise StoreError(store.describe_store_error(error)) from None
        time.sleep(0.5)


def _end_badly(run_id: str, name: str, error: BaseException) -> BaseException:
    """End the active run as ``error`` says and return the error to raise, naming the run."""
    status, ending = ending_for(error)
    if ending.cause is Cause.SIGNAL:
        what = ending.reason if not isinstance(error, RunStopped) else f"{ending.reason}; {error}"
    else:
        what = f"failed: {ending.reason}"
    waiting, problem = _end(run_id, status, ending)
    if waiting is not None:
        problem = f"; {_waiting_text(run_id, waiting)}"
    elif problem:
        problem = f" ({problem})"
    message = f"run {run_id} ({name}) {what}{problem}"
    if ending.cause is Cause.SIGNAL:
        return RunStopped(message, run_id, error.signum if hasattr(error, "signum") else 2)
    return RunFailed(message, run_id)


def failed_child(name: str, error: BaseException, labels: Labels) -> str:
    """A nested run for a job that could not start (a configuration that cannot take the
    settings, a worker that died before its run existed), marked FAILED with its error."""
    _, ending = ending_for(error)
    with mlflow.start_run(run_name=name, nested=True, tags={**labels.tags(), **ending.tags()}) as run:
        mlflow.end_run("FAILED")
    return run.info.run_id


class _Heartbeat:
    """Refresh the run's heartbeat tag every heartbeat_seconds() from a daemon thread."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._stopped = threading.Event()
        with store.fail_fast():
            self._beat()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id[:8]}",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            MlflowClient().set_tag(self.run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
        except Exception:  # noqa: BLE001 - a missed beat is retried; training goes on
            pass

    def _loop(self) -> None:
        while not self._stopped.wait(heartbeat_seconds()):
            self._beat()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


def mark_stopped_early(by: str, epoch: int | None = None) -> None:
    """Record on the trial's run open in this thread that its search stopped it: ``by`` "pruned"
    (after ``epoch``) or "time budget"."""
    run_id = mlflow.active_run().info.run_id
    tags = {STOPPED_BY_TAG: by, **({PRUNED_TAG: "true", PRUNED_EPOCH_TAG: str(epoch)} if epoch is not None else {})}
    logged.log_batch(run_id, tags=tags)
