"""``fmtrain sync``: replay the journals that runs left while the tracking store was away.

A run whose process could not reach the store keeps its records (metrics with their steps and
times, params, tags, artifacts, its model and its end) in ``fmtrain-journal/RUN_ID/`` (see
``tracking.journal``). Once the store is back, ``sync`` replays them in order and ends the run
as its process would have; the journal is removed once the store holds all of it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Synced:
    """A journal replayed: its run, how many records it held, and the run's status now."""

    run_id: str
    records: int
    status: str
    torn: list[str]  # the records cut short (``FILE line N``), left out
    skipped_epochs: int = 0  # epochs left out: the run, continued by another process, holds them
    skipped: int = 0  # other records left out for that reason (its files, model, tags, end)


def sync(run_id: str | None = None, every: bool = False) -> list[Synced]:
    """Replay the journal of ``run_id``, or (``every``) every journal that waits; returns what
    each run holds now. ValueError when there is nothing to replay or the store is still away."""
    from fmtrain.learning import backend
    from fmtrain.tracking import journal, store

    if (run_id is None) == (not every):
        raise ValueError("give a RUN_ID or --all (not both)")
    store.open_store(select=False)
    waiting = journal.pending_runs()
    if run_id is not None:
        waiting = [found for found in waiting if found.run_id == run_id]
        if not waiting:
            raise ValueError(f"no journal of run {run_id} waits in {journal.root()} (run sync from "
                             "the folder the run was started in, or set FMTRAIN_JOURNAL_DIR)")
    backend.use(backend.DEFAULT_BACKEND)  # a journal may hold a Keras model to log
    synced = []
    for found in waiting:
        store.get_run(found.run_id)  # a run of this store: ValueError naming it otherwise
        records = found.count()
        if not found.replay():
            if found.last.fenced:
                raise ValueError(f"run {found.run_id} went on in process {found.last.owner}, which still runs it; "
                                 f"sync its journal ({found.folder}) once that run has ended")
            raise ValueError(f"tracking store {store.tracking_uri()} cannot be reached; the journal "
                             f"of run {found.run_id} still waits in {found.folder}")
        torn = [f"{found.lines} line {number}" for number in found.torn]
        found.remove()
        synced.append(Synced(found.run_id, records, store.get_run(found.run_id).info.status, torn,
                             len(found.last.skipped_steps), found.last.skipped))
    return synced
