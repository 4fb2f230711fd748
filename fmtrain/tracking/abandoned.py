"""Runs that their own process cannot end: the one way to end them, who their process is, and
the final check of what this process leaves behind.

A run records which process opened it: host and pid, an identity of the machine or container
(hostname, boot id and pid namespace) and the process's start time, so that ``reap`` can prove
that process gone (pids are reused; containers share hostnames) instead of guessing.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import psutil
from mlflow.tracking import MlflowClient

from fmtrain.tracking import journal, ledger, store
from fmtrain.tracking.names import CORES_TAG, ERROR_TAG, HOST_TAG, JOURNAL_TAG, PROCESS_TAG, START_TAG


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


def _same_start(recorded: str, found: str | None) -> bool:
    """Whether a recorded start time is that of the process found now (psutil's float, to the
    hundredth of a second its text keeps)."""
    return found is not None and abs(float(recorded) - float(found)) < 0.02


def process_tags() -> dict[str, str]:
    """The tags that say which process opened a run, and where its journal would be."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}", HOST_TAG: host_identity(),
            START_TAG: process_start(pid) or "", JOURNAL_TAG: f"{socket.gethostname()}:{journal.root()}",
            **({CORES_TAG: ",".join(map(str, sorted(os.sched_getaffinity(0))))}
               if hasattr(os, "sched_getaffinity") else {})}


def proven_gone(tags: dict[str, str]) -> bool:
    """Whether the process that opened a run (its tags) is known to have ended: recorded on this
    very machine or container, and no process with its pid and start time exists. Without the
    identity (a run of an older fmtrain) nothing is proven."""
    host, _, pid = tags.get(PROCESS_TAG, "").rpartition(":")
    try:
        started = float(tags.get(START_TAG, ""))
    except ValueError:
        return False
    # A start written in clock ticks since boot (an older fmtrain) proves nothing either.
    if not pid.isdigit() or tags.get(HOST_TAG) != host_identity() or started < 1e9:
        return False
    return not _same_start(tags[START_TAG], process_start(int(pid)))


def unsynced_journal(run_id: str, tags: dict[str, str]) -> Path | None:
    """The folder of ``run_id``'s journal when records of it wait there (on this host)."""
    host, _, folder = tags.get(JOURNAL_TAG, "").partition(":")
    for place in ([Path(folder) / run_id] if host == socket.gethostname() and folder else []) + \
            [journal.root() / run_id]:
        if journal.Journal(run_id, place).pending:
            return place
    return None


def end_left_open(run_id: str, status: str, reason: str, name: str = "",
                  replacing: str | None = None) -> bool:
    """End a run that its own process cannot end (gone, or stopped on this process's behalf) as
    ``status``, with ``reason`` in ``fmtrain.error``: the one way to do so. A run that is no
    longer RUNNING (its process ended it meanwhile) is left as it is, unless its error is
    ``replacing`` (it ended for a reason that this one tells better). Returns whether it ended
    it. Short retries: a store that is away raises at once."""
    client = MlflowClient()
    with store.fail_fast():
        run = client.get_run(run_id)
        if run.info.status != "RUNNING" and (replacing is None
                                             or run.data.tags.get(ERROR_TAG) != replacing):
            return False
        client.set_tag(run_id, ERROR_TAG, reason)
        client.set_terminated(run_id, status)
    ledger.ended(run_id, name)
    return True


def left_open() -> list[str]:
    """The final check: each run this process opened or ended that the store still shows
    RUNNING, as a line saying what will end it. Runs the store cannot be asked about count as
    left open."""
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
            folder = unsynced_journal(run_id, dict(run.data.tags))
            if folder is not None:
                lines.append(f"{label} waits in journal {folder}: `fmtrain sync {run_id}` will end it")
            else:
                lines.append(f"{label} could not be ended: `fmtrain reap --yes` will end it")
    return lines
