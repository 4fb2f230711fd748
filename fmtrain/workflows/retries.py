"""A sweep's children whose Ray worker died, tried again on a live worker from their last epoch.

When the worker process (or node) training a task dies, the engine asks ``retry`` what to run
instead. Up to ``max_retries`` times per task, the answer is the same group again: a member
whose run FINISHED before the worker died is kept; a member whose run was left RUNNING has that
run ended KILLED with the reason and continues in it from the state its last completed epoch
left in the store (``workflows.resume``; its tag ``fmtrain.resumes`` records when, why and from
which epoch); a member that had no run yet, or no state, trains anew. Nothing is written by hand
that Ray decides: where the task runs again is Ray's choice of a live worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from fmtrain.errors import WorkerDied, one_line
from fmtrain.workflows.sweep_jobs import ChildJob, own_runs

DEFAULT_MAX_RETRIES = 2


def retrier(groups: list[list[ChildJob]], known: set[str], max_retries: int,
            echo: Callable[[str], None]) -> Callable[[int, BaseException], list[ChildJob] | None]:
    """The engine's ``retry``: given a task's index and the error that ended it, the group to run
    in its place (also put in ``groups``), or None to record it as lost."""

    def retry(index: int, error: BaseException) -> list[ChildJob] | None:
        group = groups[index]
        if not isinstance(error, WorkerDied) or group[0].attempt >= max_retries:
            return None
        again = [_again(job, error, known) for job in group]
        groups[index] = again
        lost = [job.run_name for job in again if job.kept_run_id is None]
        echo(f"{', '.join(lost)}: worker died ({one_line(error)}); retry {again[0].attempt} of "
             f"{max_retries}, from the last completed epoch")
        return again

    return retry


def _again(job: ChildJob, error: BaseException, known: set[str]) -> ChildJob:
    """``job`` for its next attempt: kept when its run FINISHED, continuing its run when the
    worker left it RUNNING (ended KILLED first), anew when it had none."""
    from fmtrain.tracking import abandoned, runs

    mine = own_runs(job, known)
    attempt = job.attempt + 1
    if not mine:
        return dataclasses.replace(job, attempt=attempt, resume_run_id=None)
    run = mine[-1]
    if run.status == "FINISHED":
        return dataclasses.replace(job, attempt=attempt, kept_run_id=run.run_id)
    abandoned.end_left_open(run.run_id, "KILLED", runs.describe_error(error), job.run_name)
    return dataclasses.replace(job, attempt=attempt, resume_run_id=run.run_id)
