"""A sweep's children: the job an engine hands to a worker, the function the worker calls
(``train_run`` under the parent, as ``fmtrain train`` trains a run), and what the driver records
when a job ends without a result.

Each job is idempotent, so that Ray may run it again on a live worker when the worker running it
dies (``--max_retries``): its runs carry the job's key, and an attempt finds what an earlier one
left. A run that FINISHED is kept; a run left RUNNING (its worker died) ends KILLED and goes on
in the same run from the state its last completed epoch left in the store
(``workflows.resume_run``; its ``fmtrain.resumes`` tag says when, why and from which epoch).

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

# Why a run an earlier attempt of its job left RUNNING ended: Ray runs a job again only once the
# worker running it has died.
EARLIER_WORKER_DIED = "WorkerDied: its Ray worker died; Ray ran its job again on a live worker"


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
    key: str  # the job's own: the label of the runs its attempts make
    kept_run_id: str | None = None  # a FINISHED child of an earlier sweep attempt (--resume)
    verbose: int = 0
    resume_run_id: str | None = None  # a child lost in an earlier sweep attempt, continued from its state

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
    ``record`` and ``following`` are ``train_run``'s (a family's leader and followers). A child
    that continues a lost run (its state) does so on its own, neither recording nor following."""
    from fmtrain.tracking import lost_runs, queries, runs
    from fmtrain.tracking.records import Cause, Ending, Labels

    labels = Labels(config=job.name, seed=job.seed, job=job.key)
    if job.kept_run_id:
        return ChildResult(job.kept_run_id, kept=True)
    try:
        config = job.config()
    except ValueError as error:
        return ChildResult(runs.failed_child(job.run_name, error, labels), error=str(error))
    lost = job.resume_run_id
    earlier = queries.children(job.parent_run_id, job=job.key)
    if earlier:  # this job ran before: its worker died, and Ray runs it again here
        last = earlier[-1]
        if last.status == "FINISHED":
            return ChildResult(last.run_id, last.scores.final_val_loss, last.seconds)
        lost_runs.settle([last], "KILLED", Ending(Cause.WORKER_DIED, EARLIER_WORKER_DIED))
        lost = last.run_id
        print(f"{job.run_name}: its worker died; Ray runs it again here, and run {lost} goes on from its "
              "last completed epoch", flush=True)
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="fmtrain-resume-") as folder:
            point = resume_run.child_point(lost, config, splits, Path(folder)) if lost else None
            if point is not None:  # its own epochs from its state: no leader's to follow or record
                record, following = None, None
            outcome = train_run(config, job.name, splits, parent_run_id=job.parent_run_id, verbose=job.verbose,
                                run_name=job.run_name, labels=labels, record=record, following=following,
                                resume_from=point)
    except (ValueError, RunFailed) as error:  # the child is FAILED; the sweep goes on
        return ChildResult(getattr(error, "run_id", None), error=str(error),
                           seconds=time.perf_counter() - start)
    return ChildResult(outcome.run_id, outcome.result.scores.final_val_loss,
                       time.perf_counter() - start)


def record_lost(job: ChildJob, error: BaseException) -> ChildResult:
    """A child whose job ended without a result: its worker died and Ray's retries are spent, or
    the job itself raised. A run that FINISHED meanwhile is kept; one left RUNNING ends FAILED with
    the reason; a child that never got a run gets a FAILED one, so that the table shows it."""
    from fmtrain.tracking import lost_runs, queries, runs
    from fmtrain.tracking.records import Labels, describe_error, ending_for

    mine = queries.children(job.parent_run_id, job=job.key)
    if mine and mine[-1].status == "FINISHED":
        return ChildResult(mine[-1].run_id, kept=True)
    if not mine:
        run_id = runs.failed_child(job.run_name, error, Labels(config=job.name, seed=job.seed, job=job.key))
    else:
        run_id = mine[-1].run_id
        lost_runs.settle([mine[-1]], *ending_for(error))
    how = "killed" if isinstance(error, WorkerDied) else "failed"
    text = str(error) if isinstance(error, RunEnded) else f"run {run_id} ({job.run_name}) {how}: {describe_error(error)}"
    return ChildResult(run_id, error=text)
