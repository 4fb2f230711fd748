"""Runs that lost their process, in one home: who a run's process is, whether it is gone, the one
way to end such runs (``settle``), and the final check of what a command leaves RUNNING.

A run records which process opened it: host and pid, an identity of the machine or container
(hostname, boot id and pid namespace) and the process's start time (psutil's), so that its
process can be proven gone (pids are reused; containers share hostnames) instead of guessed.
Where that cannot be proven (another host), only the heartbeat counts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from mlflow.tracking import MlflowClient

from fmtrain.tracking import journal, ledger, store
from fmtrain.tracking.names import (
    CORES_TAG,
    ERROR_TAG,
    HOST_TAG,
    JOURNAL_TAG,
    JOURNAL_WAITS_TAG,
    PROCESS_TAG,
    START_TAG,
)
from fmtrain.tracking.records import Cause, Ending, RunRecord

# Four missed heartbeats (every 30 s): long enough that a live but busy process is never
# mistaken for a dead one.
DEFAULT_STALE_AFTER = 120.0


def host_identity() -> str:
    """This machine or container: hostname, boot id (or machine id) and pid namespace."""
    boot = ""
    for path in ("/proc/sys/kernel/random/boot_id", "/etc/machine-id"):
        with contextlib.suppress(OSError):
            boot = Path(path).read_text().strip()
            break
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} boot={boot} {namespace}".strip()


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (Unix seconds, as psutil reads it), or None when there is no
    such process."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def process_tags() -> dict[str, str]:
    """The tags that say which process opened a run, and where its journal would be."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}", HOST_TAG: host_identity(),
            START_TAG: process_start(pid) or "", JOURNAL_TAG: f"{socket.gethostname()}:{journal.root()}",
            **({CORES_TAG: ",".join(map(str, sorted(os.sched_getaffinity(0))))}
               if hasattr(os, "sched_getaffinity") else {})}


def process_alive(record: RunRecord) -> bool | None:
    """Whether the process that opened ``record`` lives: True or False where that can be known
    (recorded on this very machine or container, with its pid and start time), None elsewhere."""
    tags = record.tags
    host, _, pid = tags.get(PROCESS_TAG, "").rpartition(":")
    try:
        started = float(tags.get(START_TAG, ""))
    except ValueError:
        return None
    # A start written in clock ticks since boot (an older fmtrain) proves nothing either.
    if not pid.isdigit() or tags.get(HOST_TAG) != host_identity() or started < 1e9:
        return None
    found = process_start(int(pid))
    return found is not None and abs(started - float(found)) < 0.02


def process_label(record: RunRecord) -> str:
    """``host:pid`` of the process that opened ``record``."""
    return record.tags.get(PROCESS_TAG, "an unknown process")


@dataclass
class StaleRun:
    """A RUNNING run and how long ago its process last showed life."""

    record: RunRecord
    age: float

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def name(self) -> str:
        return self.record.name


def stale(records: list[RunRecord], stale_after: float = DEFAULT_STALE_AFTER,
          now: float | None = None) -> list[StaleRun]:
    """The RUNNING runs among ``records`` silent for more than ``stale_after`` seconds, or whose
    process is proven gone."""
    now = time.time() if now is None else now
    return [StaleRun(record, now - record.last_sign_of_life) for record in records
            if record.status == "RUNNING"
            and (now - record.last_sign_of_life > stale_after or process_alive(record) is False)]


def stale_reason(age: float) -> str:
    """The reason of a run ended because its process is gone."""
    return f"process gone: no heartbeat for {age:.0f} s (killed, out of memory or power loss)"


def unsynced_journal(record: RunRecord) -> Path | None:
    """The folder of the run's journal when records of it wait there (on this host)."""
    host, _, folder = record.tags.get(JOURNAL_TAG, "").partition(":")
    for place in ([Path(folder) / record.run_id] if host == socket.gethostname() and folder else []) + \
            [journal.root() / record.run_id]:
        if journal.Journal(record.run_id, place).pending:
            return place
    return None


def journal_elsewhere(record: RunRecord) -> tuple[str, str] | None:
    """(host, folder) of the journal the run's process started on another host, or None."""
    host, _, folder = record.tags.get(JOURNAL_WAITS_TAG, "").partition(":")
    return (host, folder) if host and host != socket.gethostname() else None


def end_left_open(run_id: str, status: str, ending: Ending, name: str = "",
                  replacing: str | None = None) -> bool:
    """End a run that its own process cannot end (gone, or stopped on this process's behalf) as
    ``status`` with ``ending``. A run that is no longer RUNNING (its process ended it meanwhile)
    is left as it is, unless its reason is ``replacing`` (it ended for a reason that this one
    tells better). Returns whether it ended it. Short retries: a store that is away raises at
    once."""
    client = MlflowClient()
    with store.fail_fast():
        run = client.get_run(run_id)
        if run.info.status != "RUNNING" and (replacing is None
                                             or run.data.tags.get(ERROR_TAG) != replacing):
            return False
        from fmtrain.tracking import logged

        logged.log_batch(run_id, tags=ending.tags(), through_journal=False)
        client.set_terminated(run_id, status)
    ledger.ended(run_id, name)
    return True


def settle(records: list[RunRecord], status: str, ending: Ending, *, replacing: str | None = None,
           skip_journaled: bool = True) -> list[RunRecord]:
    """End each of ``records`` still RUNNING (or whose reason is ``replacing``) as ``status`` with
    ``ending``, on behalf of a process that cannot: the one way fmtrain does so (a sweep's
    stopped or lost children, a search's lost trials, a job whose retries are spent, reap). A run
    whose records wait in a journal on this host is left for ``fmtrain sync``. Returns those
    ended."""
    ended = []
    for record in records:
        if record.status != "RUNNING" and replacing is None:
            continue
        if skip_journaled and record.status == "RUNNING" and unsynced_journal(record) is not None:
            continue
        if end_left_open(record.run_id, status, ending, record.name, replacing=replacing):
            ended.append(record)
    return ended


def process_lost(age: float) -> Ending:
    """The Ending of a run whose process is gone."""
    return Ending(Cause.PROCESS_LOST, stale_reason(age))


def left_open() -> list[str]:
    """The final check: each run this command opened or ended that the store still shows
    RUNNING, as a line saying what will end it. Runs the store cannot be asked about count as
    left open."""
    from fmtrain.tracking.queries import record_of

    lines = []
    for run_id, name in ledger.touched_runs():
        label = f"run {run_id}" + (f" ({name})" if name else "")
        try:
            with store.fail_fast():
                run = MlflowClient().get_run(run_id)
        except Exception:  # noqa: BLE001 - unknown is reported as not ended
            waiting = journal.Journal(run_id)
            if waiting.pending:
                lines.append(f"{label} waits in journal {waiting.folder}: `fmtrain sync {run_id}` will end it")
            else:
                lines.append(f"{label} could not be checked: the store did not answer")
            continue
        if run.info.status == "RUNNING":
            folder = unsynced_journal(record_of(run))
            if folder is not None:
                lines.append(f"{label} waits in journal {folder}: `fmtrain sync {run_id}` will end it")
            else:
                lines.append(f"{label} could not be ended: `fmtrain reap --yes` will end it")
    return lines
