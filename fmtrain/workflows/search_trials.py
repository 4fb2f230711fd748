"""A search's trials: the job an engine hands to a worker (``train_run`` with the settings the
study chose, nested under the search's parent), and the trials read back as rows.

Each job is idempotent, as a sweep's child is: when the worker training a trial dies, Ray runs
the job again on a live worker (``--max_retries``), and the trial finds its own run by its job's
key: a run that FINISHED is kept; a run left RUNNING ends KILLED and continues from the state
its last completed epoch left in the store (``workflows.resume_run``). The store is the only
storage a trial needs: no shared disk.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fmtrain.errors import RunEnded, RunFailed, WorkerDied
from fmtrain.learning import backend, configs, data
from fmtrain.tuning import study as studies
from fmtrain.tuning.trials import TrialRow, trial_name
from fmtrain.workflows import resume_run
from fmtrain.workflows.sweep_children import EARLIER_WORKER_DIED
from fmtrain.workflows.train import train_run


@dataclass(frozen=True)
class TrialJob:
    """One trial as an engine hands it to a worker; picklable (a Ray worker receives it)."""

    base: configs.TrainConfig  # the configuration every trial starts from
    config_name: str
    parent_run_id: str
    number: int  # the trial's number in the study
    settings: dict  # the values the sampler chose, by setting name
    trial: object  # Optuna's trial, which the worker reports each epoch to
    key: str  # the job's own: the label of the runs its attempts make
    deadline: float | None = None  # Unix seconds at which the search's time budget is spent
    verbose: int = 0


@dataclass(frozen=True)
class TrialResult:
    """How a trial ended: its run, its kept model's final val_loss (the objective) and accuracy,
    whether the search stopped it early, or the error that failed it."""

    run_id: str | None
    val_loss: float | None = None
    val_accuracy: float | None = None
    stopped_by: str = ""
    stopped_epoch: int | None = None
    error: str | None = None


def _labels(job: TrialJob):
    from fmtrain.tracking.records import Labels

    return Labels(config=job.config_name, search=job.parent_run_id, trial=job.number, job=job.key)


def run_trial(job: TrialJob, splits: data.Splits) -> TrialResult:
    """One trial, here or in a Ray worker: ``train_run`` with the chosen settings, reporting each
    epoch to the study, which may stop it (pruned, or out of the time budget)."""
    from fmtrain.tracking import lost_runs, queries, runs
    from fmtrain.tracking.records import Cause, Ending

    config = dataclasses.replace(job.base, **{key: plain(value) for key, value in job.settings.items()})
    lost = None
    earlier = queries.children(job.parent_run_id, job=job.key)
    if earlier:  # this trial ran before: its worker died, and Ray runs it again here
        last = earlier[-1]
        if last.status == "FINISHED":
            return _result(last)
        lost_runs.settle([last], "KILLED", Ending(Cause.WORKER_DIED, EARLIER_WORKER_DIED))
        lost = last.run_id
        print(f"{trial_name(job.number)}: its worker died; Ray runs it again here, and run {lost} goes on from its "
              "last completed epoch", flush=True)
    stopped: dict = {}

    def stop(kind: str, epoch: int) -> None:
        stopped.update(by=kind, epoch=epoch)
        runs.mark_stopped_early(kind, epoch if kind == studies.PRUNED else None)

    backend.use(config.backend)  # Keras on the trial's backend, before its callback is built
    try:
        with tempfile.TemporaryDirectory(prefix="fmtrain-resume-") as folder:
            point = resume_run.child_point(lost, config, splits, Path(folder)) if lost else None
            outcome = train_run(config, job.config_name, splits, parent_run_id=job.parent_run_id,
                                verbose=job.verbose, run_name=trial_name(job.number), labels=_labels(job),
                                gates=[studies.epoch_reporter(job.trial, job.deadline, stop)], resume_from=point)
    except (ValueError, RunFailed) as error:  # the trial is FAILED; the search goes on
        return TrialResult(getattr(error, "run_id", None), error=str(error))
    scores = outcome.result.scores
    return TrialResult(outcome.run_id, scores.final_val_loss, scores.final_val_accuracy,
                       stopped.get("by", ""), stopped.get("epoch"))


def _result(record) -> TrialResult:
    scores = record.scores
    return TrialResult(record.run_id, scores.final_val_loss, scores.final_val_accuracy, record.stopped_by,
                       record.pruned_epoch if record.pruned_epoch is not None else scores.stopped_epoch)


def record_lost(job: TrialJob, error: BaseException) -> TrialResult:
    """A trial whose job ended without a result: its worker died and Ray's retries are spent, or
    the job itself raised. Its run, if still RUNNING, ends FAILED with the reason; a trial that
    never got a run gets a FAILED one, so that the search's table shows it."""
    from fmtrain.tracking import lost_runs, queries, runs
    from fmtrain.tracking.records import describe_error, ending_for

    mine = queries.children(job.parent_run_id, job=job.key)
    if mine and mine[-1].status == "FINISHED":
        return _result(mine[-1])
    if not mine:
        run_id = runs.failed_child(trial_name(job.number), error, _labels(job))
    else:
        run_id = mine[-1].run_id
        lost_runs.settle([mine[-1]], *ending_for(error))
    how = "killed" if isinstance(error, WorkerDied) else "failed"
    text = str(error) if isinstance(error, RunEnded) else f"run {run_id} ({trial_name(job.number)}) {how}: {describe_error(error)}"
    return TrialResult(run_id, error=text)


def trial_rows(parent_id: str, names: list[str]) -> list[TrialRow]:
    """The search's trials as the store holds them, in the order of their numbers (a trial run
    again after its worker died is one run)."""
    from fmtrain.tracking import queries

    return sorted((TrialRow(number=record.labels.trial if record.labels.trial is not None else -1,
                            run_id=record.run_id, status=record.status,
                            settings={name: record.settings.get(name, "-") for name in names},
                            final_val_loss=record.scores.final_val_loss,
                            final_val_accuracy=record.scores.final_val_accuracy,
                            epochs_run=record.scores.epochs_run, pruned_epoch=record.pruned_epoch,
                            stopped_by=record.stopped_by, error=record.error,
                            counts=_ended_by_itself(record))
                   for record in queries.children(parent_id) if record.labels.trial is not None),
                  key=lambda row: row.number)


def _ended_by_itself(record) -> bool:
    """Whether a trial's run ended as the trial's own end: FINISHED, or failed (its error, or its
    worker dead once Ray's retries were spent); not killed with its search's process or by a
    signal, which a resumed search replaces."""
    from fmtrain.tracking.records import Cause

    return record.status == "FINISHED" or (record.ending is not None
                                           and record.ending.cause in (Cause.ERROR, Cause.WORKER_DIED))


def plain(value):
    """Optuna's numpy scalars as Python's, so that settings print and compare as the CLI's."""
    return value.item() if hasattr(value, "item") else value
