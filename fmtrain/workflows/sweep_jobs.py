"""A sweep's children: the job an engine hands to a worker, the function the worker calls
(``train_run`` under the parent, as ``fmtrain train`` trains a run) and what the sweep's driver
records when a worker dies.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fmtrain.errors import RunEnded, RunFailed, WorkerDied
from fmtrain.learning import configs, data
from fmtrain.learning.configs import TrainConfig
from fmtrain.workflows import resume
from fmtrain.workflows.train import train_run


@dataclass(frozen=True)
class ChildJob:
    """One (configuration, seed) of a sweep as an engine hands it to ``run_child``; small and
    picklable, since a Ray worker receives it."""

    index: int
    name: str  # the configuration's
    seed: int
    run_name: str
    parent_run_id: str
    settings: dict  # the typed settings every child shares (configs.parse_value's)
    kept_run_id: str | None = None  # a FINISHED child of an earlier attempt (--resume)
    verbose: int = 0
    resume_run_id: str | None = None  # a lost child, continued from its state (workflows.resume)
    attempt: int = 0  # retries after its worker died (--max_retries)

    def config(self) -> TrainConfig:
        """The child's configuration; ValueError when it cannot take the settings."""
        return dataclasses.replace(configs.resolve(self.name, self.settings), seed=self.seed)

    @property
    def trains(self) -> bool:
        """Whether the child is trained: not kept, and its configuration takes the settings."""
        if self.kept_run_id is not None:
            return False
        try:
            self.config()
        except ValueError:
            return False
        return True


@dataclass
class ChildResult:
    """What became of a child: its run, and its val loss, or the error that failed it."""

    run_id: str | None
    final_val_loss: float | None = None
    seconds: float = 0.0
    error: str | None = None
    kept: bool = False


def run_child(job: ChildJob, splits: data.Splits) -> ChildResult:
    """One child of a sweep: kept from an earlier attempt, FAILED for a configuration that cannot
    take the settings, or trained by ``train_run`` under the parent, in this process or in a Ray
    worker (a lost child that left a state continues in its own run). A failure is returned, so that the sweep goes on; a signal's stop is raised."""
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import runs

    if job.kept_run_id:
        return ChildResult(job.kept_run_id, kept=True)
    seed_tag = {tags.SEED_TAG: str(job.seed)}
    try:
        config = job.config()
    except ValueError as error:
        run_id = runs.failed_child(job.run_name, error, tags={tags.CONFIG_TAG: job.name, **seed_tag})
        return ChildResult(run_id, error=str(error))
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="fmtrain-resume-") as folder:
            point = resume.child_point(job.resume_run_id, config, splits, Path(folder)) \
                if job.resume_run_id else None
            outcome = train_run(config, job.name, splits,
                                parent_run_id=job.parent_run_id, verbose=job.verbose,
                                run_name=job.run_name, tags=seed_tag, resume_from=point)
    except (ValueError, RunFailed) as error:  # the child is FAILED; the sweep goes on
        return ChildResult(getattr(error, "run_id", None), error=str(error),
                           seconds=time.perf_counter() - start)
    return ChildResult(outcome.run_id, outcome.result.scores.final_val_loss,
                       time.perf_counter() - start)


def record_lost(job: ChildJob, error: BaseException, known: set[str]) -> ChildResult:
    """A child whose task ended without a result: its worker died (killed, out of memory) or it
    raised. Its run, if still RUNNING, ends KILLED (FAILED for an error) with the reason; a child
    that never got a run gets a FAILED one, so that the table shows it."""
    from fmtrain.tracking import abandoned, queries, runs
    from fmtrain.tracking import names as tags

    mine = [child for child in queries.child_states(job.parent_run_id)
            if child.run_id not in known and child.config == job.name
            and child.tags.get(tags.SEED_TAG) == str(job.seed)]
    reason = runs.describe_error(error)
    if not mine:
        run_id = runs.failed_child(job.run_name, error, tags={tags.CONFIG_TAG: job.name,
                                                              tags.SEED_TAG: str(job.seed)})
    else:
        run_id = mine[-1].run_id
        abandoned.end_left_open(run_id, "KILLED" if isinstance(error, WorkerDied) else "FAILED", reason,
                                job.run_name)
    how = "killed" if isinstance(error, WorkerDied) else "failed"
    text = str(error) if isinstance(error, RunEnded) else f"run {run_id} ({job.run_name}) {how}: {reason}"
    return ChildResult(run_id, error=text)
