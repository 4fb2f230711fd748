"""A sweep's children: the job an engine hands to a worker, the function the worker calls
(``train_run`` under the parent, as ``fmtrain train`` trains a run) and what the sweep's driver
records when a worker dies.

With shared epochs, the jobs go to the workers in families (``learning.trajectory``): a leader
whose fit() computes the epochs, and followers, each its own run, that replay them.
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
from fmtrain.learning.trajectory import Trajectory, can_lead, family, follows
from fmtrain.workflows import resume_run
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


def families(jobs: list[ChildJob]) -> list[list[ChildJob]]:
    """``jobs`` (each one that trains) in groups: each group's first job is the longest of a
    family that can lead, and the others follow its epochs. A job that follows no one leads a
    group of its own. Groups keep the order of their leaders in ``jobs``."""
    groups: list[list[ChildJob]] = []
    left = list(jobs)
    while left:
        kin = [job for job in left if family(job.config()) == family(left[0].config())]
        leaders = [job for job in kin if can_lead(job.config())] or [left[0]]
        leader = max(leaders, key=lambda job: (job.config().epochs, job.config().validation))
        group = [leader] + [job for job in kin if job is not leader and follows(leader.config(), job.config())]
        groups.append(group)
        left = [job for job in left if job not in group]
    return sorted(groups, key=lambda group: jobs.index(group[0]))


def run_family(group: list[ChildJob], splits: data.Splits) -> list[ChildResult]:
    """A group of ``families``: the leader's run, recording its epochs, then each follower's run,
    replaying them (each follower trains on its own when the leader failed)."""
    trajectory = Trajectory()
    leader, *followers = group
    results = [run_child(leader, splits, record=trajectory)]
    shared = (results[0].run_id, trajectory) if results[0].error is None and len(trajectory) else None
    return results + [run_child(job, splits, following=shared) for job in followers]


def run_child(job: ChildJob, splits: data.Splits, record: Trajectory | None = None,
              following: tuple[str, Trajectory] | None = None) -> ChildResult:
    """One child of a sweep: kept from an earlier attempt, FAILED for a configuration that cannot
    take the settings, or trained by ``train_run`` under the parent, in this process or in a Ray
    worker. A failure is returned, so that the sweep goes on; a signal's stop is raised.
    ``record`` and ``following`` are ``train_run``'s (a family's leader and followers). A lost
    child that left a state continues in its own run from it, on its own (``workflows.resume``)."""
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
            point = resume_run.child_point(job.resume_run_id, config, splits, Path(folder)) \
                if job.resume_run_id else None
            if point is not None:  # its own epochs from its state: no leader's to follow or record
                record, following = None, None
            outcome = train_run(config, job.name, splits,
                                parent_run_id=job.parent_run_id, verbose=job.verbose,
                                run_name=job.run_name, tags=seed_tag, record=record, following=following,
                                resume_from=point)
    except (ValueError, RunFailed) as error:  # the child is FAILED; the sweep goes on
        return ChildResult(getattr(error, "run_id", None), error=str(error),
                           seconds=time.perf_counter() - start)
    return ChildResult(outcome.run_id, outcome.result.scores.final_val_loss,
                       time.perf_counter() - start)


def own_runs(job: ChildJob, known: set[str]) -> list:
    """The runs of ``job``'s (configuration, seed) under its parent that this attempt made or
    continued (not in ``known``, the children there before, unless it resumes one), oldest first
    (``tracking.queries.RunState``)."""
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import queries

    return [child for child in queries.child_states(job.parent_run_id)
            if (child.run_id not in known or child.run_id == job.resume_run_id) and child.config == job.name
            and child.tags.get(tags.SEED_TAG) == str(job.seed)]


def record_lost(job: ChildJob, error: BaseException, known: set[str]) -> ChildResult:
    """A child whose task ended without a result: its worker died (killed, out of memory) or it
    raised. Its run, if still RUNNING, ends KILLED (FAILED for an error) with the reason; a child
    that never got a run gets a FAILED one, so that the table shows it."""
    from fmtrain.tracking import abandoned, runs
    from fmtrain.tracking import names as tags

    mine = own_runs(job, known)
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


def record_family_lost(group: list[ChildJob], error: BaseException, known: set[str]) -> list[ChildResult]:
    """A group whose task ended without a result: its members that FINISHED before are kept,
    the others recorded as ``record_lost`` records a child."""
    results = []
    for job in group:
        mine = own_runs(job, known)
        results.append(ChildResult(mine[-1].run_id, kept=True) if mine and mine[-1].status == "FINISHED"
                       else record_lost(job, error, known))
    return results
