"""``fmtrain reap``: find and end runs left RUNNING by a process that died without a word.

SIGKILL, a power cut or the out-of-memory killer leave no chance to end a run. Every open run
refreshes its heartbeat tag while its process lives, so a RUNNING run whose heartbeat is old
belongs to a process that is gone; so does one whose process is proven gone (the same machine
or container, and no process of its pid and start time). A run whose records wait in a journal
on this host (the store was away), or on the host its tags name, is not ended: `fmtrain sync`
there ends it.
"""

from __future__ import annotations


def reap(experiment: str | None = None, stale_after: float | None = None, act: bool = False):
    """The stale runs of ``experiment`` (or of every experiment), with ``act`` ended KILLED, and
    a line for each stale run left alone because its records wait in a journal.

    Returns (the stale runs, ``tracking.lost_runs.StaleRun``; the lines)."""
    from fmtrain.tracking import lost_runs, queries, store

    stale_after = lost_runs.DEFAULT_STALE_AFTER if stale_after is None else stale_after
    if stale_after < 0:
        raise ValueError(f"--stale-after must be 0 or more seconds, got {stale_after}")
    store.open_store(select=False)
    stale, waiting = [], []
    for run in lost_runs.stale(queries.running_runs(experiment), stale_after):
        folder = lost_runs.unsynced_journal(run.record)
        if folder is not None:
            waiting.append(f"{run.run_id}  {run.name}  its records wait in journal {folder}: "
                           f"`fmtrain sync {run.run_id}` ends it, not reap")
        elif (elsewhere := lost_runs.journal_elsewhere(run.record)) is not None:
            waiting.append(f"{run.run_id}  {run.name}  its journal waits on host {elsewhere[0]} in {elsewhere[1]}: "
                           f"`fmtrain sync {run.run_id}` there ends it, not reap")
        else:
            stale.append(run)
    if act:
        for run in stale:
            lost_runs.settle([run.record], "KILLED", lost_runs.process_lost(run.age))
    return stale, waiting
