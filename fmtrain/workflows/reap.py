"""Find and end runs left RUNNING by a process that died without a word.

SIGKILL, a power cut or the out-of-memory killer leave no chance to end a run. Every open run
refreshes its heartbeat tag while its process lives, so a RUNNING run whose heartbeat is old
belongs to a process that is gone.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from fmtrain.tracking.names import PROCESS_TAG

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
    seconds, or whose process, on this host, no longer exists."""
    now = time.time() if now is None else now
    return [StaleRun(s.run_id, s.name, now - s.last_sign_of_life) for s in states
            if s.status == "RUNNING"
            and (now - s.last_sign_of_life > stale_after or _process_gone(s.tags.get(PROCESS_TAG)))]


def _process_gone(where: str | None) -> bool:
    """Whether ``host:pid`` names a process of this host that has ended."""
    host, _, pid = (where or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap(experiment: str | None = None, stale_after: float = DEFAULT_STALE_AFTER,
         act: bool = False) -> list[StaleRun]:
    """The stale runs of ``experiment`` (or of every experiment); with ``act``, end them KILLED."""
    from fmtrain.tracking import queries, runs, store

    if stale_after < 0:
        raise ValueError(f"--stale-after must be 0 or more seconds, got {stale_after}")
    store.open_store(select=False)
    stale = find_stale(queries.running_runs(experiment), stale_after)
    if act:
        for run in stale:
            runs.end_stale(run.run_id, run.age)
    return stale
