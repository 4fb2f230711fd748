"""A sweep's children whose Ray worker died, tried again on a live worker from their last epoch;
and what a lost attempt left, for a search's trials too (``last_attempt``, ``retry_line``).

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
        echo(retry_line(", ".join(lost), one_line(error), again[0].attempt, max_retries))
        return again

    return retry


def retry_line(names: str, why: str, attempt: int, max_retries: int) -> str:
    """The line a sweep or a search prints when ``names`` are tried again after their worker died."""
    return f"{names}: worker died ({why}); retry {attempt} of {max_retries}, from the last completed epoch"


def last_attempt(mine: list, why: str, name: str) -> tuple[str | None, str | None]:
    """What the last of ``mine`` (the runs an earlier attempt made, oldest first,
    ``tracking.queries.RunState``) left: (its run id, None) when it FINISHED, to keep; (None, its
    run id) when it was left RUNNING, now ended KILLED with ``why``, to continue; (None, None)
    when there is none, to train anew."""
    from fmtrain.tracking import abandoned

    if not mine:
        return None, None
    run = mine[-1]
    if run.status == "FINISHED":
        return run.run_id, None
    abandoned.end_left_open(run.run_id, "KILLED", why, name)
    return None, run.run_id


def _again(job: ChildJob, error: BaseException, known: set[str]) -> ChildJob:
    """``job`` for its next attempt: kept when its run FINISHED, continuing its run when the
    worker left it RUNNING (ended KILLED first), anew when it had none."""
    from fmtrain.tracking import runs

    kept, lost = last_attempt(own_runs(job, known), runs.describe_error(error), job.run_name)
    if kept is not None:
        return dataclasses.replace(job, attempt=job.attempt + 1, kept_run_id=kept)
    return dataclasses.replace(job, attempt=job.attempt + 1, resume_run_id=lost)
