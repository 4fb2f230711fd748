"""Find and end runs left RUNNING by a process that died without a word.

SIGKILL, a power cut or the out-of-memory killer leave no chance to end a run. Every open run
refreshes its heartbeat tag while its process lives, so a RUNNING run whose heartbeat is old
belongs to a process that is gone; so does one whose process is proven gone (the same machine
or container, and no process of its pid and start time). A run whose records wait in a journal
on this host (the store was away) is not ended: `fmtrain sync` ends it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Four missed heartbeats (every 30 s): long enough that a live but busy process is never
# mistaken for a dead one.
DEFAULT_STALE_AFTER = 120.0


@dataclass
class StaleRun:
    """A RUNNING run and how long ago its process last showed life."""

    run_id: str
    name: str
    age: float


def find_stale(states, stale_after: float, now: float | None = None) -> list[StaleRun]:
    """The RUNNING runs among ``states`` (queries.RunState) silent for more than ``stale_after``
    seconds, or whose process is proven gone."""
    from fmtrain.tracking import abandoned

    now = time.time() if now is None else now
    return [StaleRun(s.run_id, s.name, now - s.last_sign_of_life) for s in states
            if s.status == "RUNNING"
            and (now - s.last_sign_of_life > stale_after or abandoned.proven_gone(s.tags))]


def reap(experiment: str | None = None, stale_after: float = DEFAULT_STALE_AFTER,
         act: bool = False) -> tuple[list[StaleRun], list[str]]:
    """The stale runs of ``experiment`` (or of every experiment), with ``act`` ended KILLED, and
    a line for each stale run left alone because its records wait in a journal."""
    from fmtrain.tracking import abandoned, queries, store

    if stale_after < 0:
        raise ValueError(f"--stale-after must be 0 or more seconds, got {stale_after}")
    store.open_store(select=False)
    stale, waiting = [], []
    for run in find_stale(states := queries.running_runs(experiment), stale_after):
        tags = next(s.tags for s in states if s.run_id == run.run_id)
        folder = abandoned.unsynced_journal(run.run_id, tags)
        if folder is not None:
            waiting.append(f"{run.run_id}  {run.name}  its records wait in journal {folder}: "
                           f"`fmtrain sync {run.run_id}` ends it, not reap")
        else:
            stale.append(run)
    if act:
        for run in stale:
            abandoned.end_left_open(run.run_id, "KILLED", stale_reason(run.age), run.name)
    return stale, waiting


def stale_reason(age: float) -> str:
    """The ``fmtrain.error`` of a run ended because its process is gone."""
    return f"process gone: no heartbeat for {age:.0f} s (killed, out of memory or power loss)"
