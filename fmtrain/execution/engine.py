"""Where jobs run (a sweep's children, a search's trials): one after another in this process,
or as Ray tasks.

An engine is handed a function and the jobs to call it with, and yields each job's outcome as
the job completes. It knows nothing of MLflow: the workflow passes the function (the one that
makes a training run) and the environment its workers need.

``--workers 1`` calls the function in this process, job after job, as a sequential sweep always
has. More workers run the jobs as Ray tasks, at most that many at once, each in a worker process
of its own: on a local Ray instance started for the sweep, or on the Ray cluster at
``--ray-address`` (or ``$RAY_ADDRESS``). Ray is an optional extra: ``pip install '.[ray]'`` in fmtrain's checkout.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from fmtrain.errors import Stopped, WorkerDied, one_line
from fmtrain.execution import node_watch, raystart, signals, worker_task

# Measured on a 2-core machine (docs/benchmark.md): two workers of one thread each
# train the chapter's sweep sooner than one process of two threads, with the same losses.
DEFAULT_WORKERS = 2
# How long cancelled tasks have to end their runs themselves before their workers are killed.
CANCEL_GRACE_SECONDS = 60.0


@dataclass
class Outcome:
    """A job that completed: its position among the jobs, the job, and what the function returned
    or the error that ended it (the function's own, or WorkerDied when its worker process or node
    died, Ray's retries spent)."""

    index: int
    job: object
    value: object = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Placement:
    """Where the jobs run: how many at once, on which Ray cluster (None: this machine), and how
    many threads each worker's framework may use."""

    workers: int
    address: str | None
    threads: int

    @property
    def in_process(self) -> bool:
        return self.workers == 1 and self.address is None

    def describe(self) -> str:
        if self.in_process:
            return "one after another in this process"
        where = f"on the Ray cluster at {self.address}" if self.address else "on a local Ray instance"
        return (f"up to {self.workers} at once {where}, each in its own worker process with "
                f"{self.threads} thread{'s' if self.threads > 1 else ''}")


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None


def default_workers() -> int:
    """DEFAULT_WORKERS where Ray is installed, else 1 (one after another in this process)."""
    return DEFAULT_WORKERS if ray_installed() else 1


def plan(workers: int | None, ray_address: str | None, jobs: int, *, option: str = "--workers",
         what: str = "children") -> Placement:
    """Decide where ``jobs`` jobs run.

    Args:
        workers: how many at once (``--workers``, a search's ``--max-concurrent``: ``option``),
            or None for ``default_workers()``.
        ray_address: a Ray cluster (``--ray-address``), or None: ``$RAY_ADDRESS`` when more
            than one worker is wanted, else this machine.
        jobs: how many jobs there are; more workers than jobs would idle.
        what: what the jobs train, for the messages (``children``, ``trials``).

    Raises ValueError for a combination that cannot work, before anything starts.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"{option.lstrip('-')} must be at least 1, got {workers}")
    if workers == 1 and ray_address:
        raise ValueError(f"--ray_address runs the {what} on a Ray cluster, which needs {option} 2 "
                         f"or more ({option} 1 trains them one after another in this process)")
    wanted = default_workers() if workers is None else workers
    placement = _placed(max(1, min(wanted, jobs)),
                        ray_address or (os.environ.get("RAY_ADDRESS") if wanted > 1 else None))
    if not placement.in_process and not ray_installed():
        raise ValueError(f"{option} {wanted} trains the {what} in Ray workers, and Ray is not "
                         "installed; install it with `pip install '.[ray]'` in fmtrain's checkout, "
                         f"or use {option} 1")
    return placement


def _placed(count: int, address: str | None) -> Placement:
    address = None if address in (None, "", "local") else address  # "local": Ray's "start one here"
    # A task on a cluster asks for one CPU and uses one thread; on this machine the cores are
    # shared out, so that N workers never run more threads than there are cores.
    return Placement(count, address, 1 if address else max(1, cores() // count))


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_environment(threads: int) -> dict[str, str]:
    """Variables that hold TensorFlow, oneDNN/OpenMP and XLA (JAX) to ``threads`` threads; a
    worker's framework reads them when it is imported, which happens inside the worker."""
    env = {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads)}
    if threads == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    return env


@contextlib.contextmanager
def start(placement: Placement, env: dict[str, str] | None = None, *, setup: Callable[[], None] | None = None,
          max_retries: int = 0):
    """The engine for ``placement``, open for the block.

    ``env`` is what each worker needs in its environment, ``setup`` a function each worker calls
    before its job (the caller's own: this layer knows nothing of what a job records), and
    ``max_retries`` how often Ray runs a job again on a live worker when the worker running it
    dies (its process killed, out of memory, its node lost); a job that raises is not run again.
    """
    if placement.in_process:
        yield InProcess()
        return
    engine = RayEngine(placement, env or {}, setup, max_retries)
    try:
        yield engine
    finally:
        engine.close()


_END = object()


class InProcess:
    """Each job in this process, in order, one after the other."""

    parallel = False

    def run(self, function: Callable, jobs: Iterable, shared, label: Callable | None = None) -> Iterator[Outcome]:
        """``function(job, shared)`` for each job, taken from ``jobs`` only once the one before
        it has been handed over (a search's next trial follows the outcome of the last)."""
        for index, job in enumerate(jobs):
            yield Outcome(index, job, function(job, shared))


class RayEngine:
    """Each job as a Ray task in a worker process of its own, at most ``workers`` at once; a task
    whose worker dies is run again by Ray (``max_retries``), on whichever live worker it gives."""

    parallel = True

    def __init__(self, placement: Placement, env: dict[str, str], setup: Callable[[], None] | None,
                 max_retries: int):
        self.ray, self.placement = raystart.connect(placement), placement
        self.env = {**env, **thread_environment(placement.threads)}
        self.setup, self.max_retries = setup, max_retries
        # On a cluster, a task whose node is lost is noticed in seconds (node_watch).
        self.watch = node_watch.NodeWatch(self.ray) if placement.address else None

    def run(self, function: Callable, jobs: Iterable, shared, label: Callable | None = None) -> Iterator[Outcome]:
        """Submit the jobs, at most ``workers`` at a time, and yield each outcome as it completes.
        A job is taken from ``jobs`` when a worker is free for it, after the outcomes that
        completed before were handed over; ``label(job)`` names its task (Ray prefixes the
        task's lines with it).

        A signal (SIGINT, SIGTERM, SIGHUP) is raised as Stopped once Ray's wait returns: raised
        from a handler inside Ray's native wait, it would break Ray. When the consumer stops (a
        signal, an error, or closing the generator), the tasks still running are cancelled
        before this returns.
        """
        ray = self.ray
        task = ray.remote(worker_task.run_job)
        # Ray runs a task again only when its worker died, never when the function raised.
        options = dict(num_cpus=self.placement.threads, max_retries=self.max_retries, retry_exceptions=False,
                       runtime_env={"env_vars": self.env})
        shared_ref = ray.put(shared)
        source = iter(jobs)
        running: dict = {}  # each running task's (index, job)
        cores_of: dict = {}  # each running task's cores (on this machine), free again when it ends
        received: list[int] = []
        count, exhausted, again = 0, False, {}  # again: how often each index was submitted anew

        def submit(index, job):
            pinned, name = self._free_cores(cores_of.values()), label(job) if label else f"job-{index}"
            report = (self.watch.queue, (index, again.get(index, 0))) if self.watch else None
            ref = task.options(name=name, **options).remote(function, job, shared_ref, pinned, self.setup, report)
            running[ref], cores_of[ref] = (index, job), pinned

        with signals.recorded(received):
            try:
                while True:
                    while not exhausted and len(running) < self.placement.workers:
                        job = next(source, _END)
                        if job is _END:
                            exhausted = True
                            break
                        submit(count, job)
                        count += 1
                    if not running:
                        break
                    done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                    if received:
                        raise Stopped(received[0])
                    for ref in done:
                        cores_of.pop(ref, None)
                        index, job = running.pop(ref)
                        yield self._outcome(index, job, ref)
                    for ref in self._on_lost_nodes(running, again):  # cancelled: its job again, or lost
                        cores_of.pop(ref, None)
                        index, job = running.pop(ref)
                        if again[index] > self.max_retries:
                            yield Outcome(index, job, error=WorkerDied(
                                f"its Ray node was lost ({self.max_retries} retries spent)"))
                        else:
                            submit(index, job)
                if received:  # during the consumer's work on the last outcome
                    raise Stopped(received[0])
            finally:
                if running:
                    self._cancel(list(running), received)

    def _free_cores(self, taken) -> tuple[int, ...] | None:
        """The cores a task about to start may run on: on a local Ray instance, ``threads`` cores
        no running task holds, so that each worker keeps cores of its own; None (anywhere) on a
        cluster, whose nodes share out their own cores."""
        if self.placement.address is not None or not hasattr(os, "sched_getaffinity"):
            return None
        held = {core for cores in taken if cores for core in cores}
        free = [core for core in sorted(os.sched_getaffinity(0)) if core not in held]
        return tuple(free[:self.placement.threads]) or None

    def _on_lost_nodes(self, running: dict, again: dict) -> list:
        """The running tasks whose node Ray marked dead, each cancelled and counted in ``again``."""
        if self.watch is None:
            return []
        keys = {(index, again.get(index, 0)): ref for ref, (index, _) in running.items()}
        lost = [keys[key] for key in self.watch.lost(keys)]
        for ref in lost:
            self.ray.cancel(ref, force=True)
            index = running[ref][0]
            self.watch.forget((index, again.get(index, 0)))
            again[index] = again.get(index, 0) + 1
        return lost

    def _outcome(self, index: int, job, ref) -> Outcome:
        exceptions = self.ray.exceptions
        try:
            return Outcome(index, job, self.ray.get(ref))
        except exceptions.RayTaskError as error:  # the function raised: its own error
            cause = getattr(error, "cause", None)
            return Outcome(index, job, error=cause if isinstance(cause, BaseException) else WorkerDied(one_line(error)))
        except exceptions.RayError as error:  # the worker died (killed, out of memory) or its node
            what = "node" if isinstance(error, exceptions.NodeDiedError) else "worker process"
            tries = (f" ({self.max_retries} retr{'y' if self.max_retries == 1 else 'ies'} spent)"
                     if self.max_retries else "")
            return Outcome(index, job, error=WorkerDied(f"its Ray {what} died{tries}: {one_line(error)}"))

    def _cancel(self, refs: list, received: list[int]) -> None:
        """Cancel the tasks of ``refs``. Each running task gets what a Ctrl-C is to its worker:
        training stops at the end of the current step and the run ends as a signal ends it. Tasks
        still running after CANCEL_GRACE_SECONDS, or when another signal comes, have their
        workers killed; the caller ends their runs."""
        ray, seen = self.ray, len(received)
        for ref in refs:
            ray.cancel(ref)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        left = refs
        while left and time.monotonic() < deadline and len(received) == seen:
            _, left = ray.wait(left, num_returns=len(left), timeout=1.0)
        for ref in left:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if left:
            ray.wait(left, num_returns=len(left), timeout=30)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
        self.ray.shutdown()
