"""What a Ray worker runs for a job: the workflow's function, its cores pinned, signals handled as
by the command line, its node told to the engine's watch."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from fmtrain.execution import node_watch, signals


def pin(cores: tuple[int, ...]) -> None:
    """Keep this process to ``cores``: every thread it has (a reused worker's thread pools
    included) and, by inheritance, every thread it starts."""
    tasks = Path("/proc/self/task")
    for thread in (tasks.iterdir() if tasks.is_dir() else []):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(thread.name), cores)
    os.sched_setaffinity(0, cores)


def run_job(function: Callable, job, shared, pinned: tuple[int, ...] | None = None,
            setup: Callable[[], None] | None = None, report: tuple | None = None):
    """A Ray task: the workflow's function, with signals handled as by the command line, so that a
    cancel (a Ctrl-C in the worker) stops training at the end of a step and ends the run.

    ``pinned``: the cores this worker process keeps to while the task runs. XLA's and
    TensorFlow's idle threads spin on every core they may use: two unpinned workers on two cores
    train an epoch about three times slower than two pinned ones (docs/benchmark.md).
    ``setup``: the workflow's own preparation of the worker (naming its node in its records).
    ``report``: the engine's node watch and this task's key, told which node runs it.
    """
    if report is not None:
        node_watch.say_where(*report)
    if setup is not None:
        setup()
    if pinned:
        pin(pinned)
    with signals.signals_handled():
        return function(job, shared)
