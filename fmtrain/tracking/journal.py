"""A run's local journal: what the store did not take during an outage, replayed in order later.

Every write of an open run's records (params, tags, metrics, artifacts, the model, its end) goes
through ``write``. When the store cannot be reached (a tracking server down or not answering),
the record goes to the run's journal instead, ``fmtrain-journal/RUN_ID/`` in the working
directory (``$FMTRAIN_JOURNAL_DIR`` when set), and training goes on. At the next write after
``probe_seconds()``, and when the run ends, the journal is replayed in order, with the original steps
and timestamps; the run ends only once it is. A journal that the process could not replay before
it left stays on disk for ``fmtrain sync``; the run stays RUNNING in the store meanwhile.
A replay writes to a run that another process took over only what ``tracking.replay`` allows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from fmtrain.tracking import replay as replays
from fmtrain.tracking import store, store_errors
from fmtrain.tracking.names import ERROR_TAG, JOURNAL_WAITS_TAG


def _here() -> str:
    """This process as a run's ``fmtrain.process`` tag names it (``host:pid``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def probe_seconds() -> float:
    """How often a run whose records wait in its journal tries the store again."""
    return float(os.environ.get("FMTRAIN_STORE_PROBE_SECONDS", "5"))


# The longest a run waits between two tries of a store that does not answer: each failed try
# doubles the wait from probe_seconds(), so that a server that hangs (each try costing its
# time-outs) slows training down less and less.
MAX_PROBE_SECONDS = 60.0


def end_wait_seconds() -> float:
    """How long a run that ends during an outage waits for the store before it leaves its journal."""
    return float(os.environ.get("FMTRAIN_STORE_WAIT_SECONDS", "60"))


_ONE_SHORT_TRY = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
JOURNAL_MODEL = "@journal"  # a metric's model: the one this journal logs when replayed


def root() -> Path:
    """The folder holding every run's journal."""
    return Path(os.environ.get("FMTRAIN_JOURNAL_DIR") or "fmtrain-journal").resolve()


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means a tracking server that cannot be reached now (not a refusal)."""
    return store.is_server() and store_errors.is_unreachable(error)


class Journal:
    """The records of one run that wait for the store, in order, in ``folder``."""

    def __init__(self, run_id: str, folder: Path | None = None):
        self.run_id, self.folder = run_id, folder or root() / run_id
        self.model_id: str | None = None  # the model this journal's replay logged
        self.torn: list[int] = []  # lines (1-based) cut short by a process that died writing them
        self.last = replays.Replay(run_id)  # how the last replay went (records skipped, who holds the run)
        self._last_try = 0.0
        self._wait = probe_seconds()

    @property
    def lines(self) -> Path:
        return self.folder / "journal.jsonl"

    @property
    def pending(self) -> bool:
        return self.lines.exists() and self._done() < len(self._entries())

    def _entries(self) -> list[dict]:
        """The complete records, in order; a line that is not one (cut short when the process died
        or the disk filled while it was written) is left out and its number kept in ``torn``."""
        if not self.lines.exists():
            return []
        entries, self.torn = [], []
        for number, line in enumerate(self.lines.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                self.torn.append(number)
        return entries

    def count(self) -> int:
        """How many records wait."""
        return len(self._entries()) - self._done()

    def _done(self) -> int:
        marker = self.folder / "replayed"
        return int(marker.read_text()) if marker.exists() else 0

    def _mark(self, count: int) -> None:
        marker = self.folder / "replayed"
        marker.with_suffix(".tmp").write_text(str(count))
        marker.with_suffix(".tmp").replace(marker)

    def append(self, entry: dict) -> None:
        (self.folder / "files").mkdir(parents=True, exist_ok=True)
        about = self.folder / "about.json"
        if not about.exists():
            about.write_text(json.dumps({"run_id": self.run_id, "tracking_uri": store.tracking_uri(),
                                         "since": time.time(), "process": _here()}))
            self._announce()
        with open(self.lines, "a+b") as handle:
            if handle.seek(0, os.SEEK_END):
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")  # a line cut short before ends here: a torn line of its own
            try:
                handle.write(json.dumps(entry).encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as error:
                raise _named(error, self.folder) from None

    def _announce(self) -> None:
        """Tell the run, if the server answers (its artifact store may be what failed), where its
        journal waits; one short try, never in the way of training."""
        saved = {name: os.environ.get(name) for name in _ONE_SHORT_TRY}
        os.environ.update(_ONE_SHORT_TRY)
        try:
            with contextlib.suppress(Exception):
                MlflowClient().set_tag(self.run_id, JOURNAL_WAITS_TAG, f"{socket.gethostname()}:{self.folder}")
        finally:
            for name, value in saved.items():
                os.environ.pop(name) if value is None else os.environ.update({name: value})

    def keep_file(self, path: str | Path, name: str | None = None) -> str:
        """A copy of ``path`` in the journal; returns its path relative to the folder."""
        files = self.folder / "files"
        files.mkdir(parents=True, exist_ok=True)
        place = files / f"{len(list(files.iterdir())):04d}"  # the artifact keeps its own name
        kept = place / (name or Path(path).name)
        try:
            place.mkdir()
            shutil.copyfile(path, kept)
        except OSError as error:
            shutil.rmtree(place, ignore_errors=True)  # no half copy keeps the space the end needs
            raise _named(error, self.folder) from None
        return str(kept.relative_to(self.folder))

    def replay(self) -> bool:
        """Replay what waits, in order; True when nothing is left. An outage stops it early (the
        rest waits); any other refusal of the store is raised. Each record is applied so that
        applying it again changes nothing (a replay killed between a record and its mark)."""
        entries, done = self._entries(), self._done()
        with store.fail_fast():
            try:  # who holds the run now: a run taken over gets only what it lacks (tracking.replay)
                self.last = replays.plan(self.run_id, self.writer(), _here()) if done < len(entries) else self.last
            except Exception as error:
                if is_outage(error):
                    self.tried()
                    return False
                raise
            if self.last.fenced:  # another process holds the run now: nothing goes to it from here
                self.tried()
                return False
            for index in range(done, len(entries)):
                try:
                    entry = self.last.trim(entries[index])
                    if entry is not None:
                        apply(self.run_id, entry, self)
                except Exception as error:
                    if is_outage(error):
                        self.tried()
                        return False
                    raise
                self._mark(index + 1)
        self._last_try, self._wait = time.monotonic(), probe_seconds()
        return True

    def writer(self) -> str | None:
        """``host:pid`` of the process that wrote the journal (None for an older fmtrain's)."""
        about = self.folder / "about.json"
        return json.loads(about.read_text()).get("process") if about.exists() else None

    def tried(self) -> None:
        """The store was just tried, and did not answer: the next try waits twice as long as the
        last (probe_seconds() at first, MAX_PROBE_SECONDS at most)."""
        if self._last_try:
            self._wait = min(MAX_PROBE_SECONDS, self._wait * 2)
        self._last_try = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last_try >= self._wait

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


_open: dict[str, Journal] = {}


def opened(run_id: str) -> Journal:
    """Start journaling ``run_id``'s writes in this process (its run was just opened)."""
    _open[run_id] = Journal(run_id)
    return _open[run_id]


def opened_journal(run_id: str) -> Journal:
    """The journal of ``run_id``, open in this process (or on disk)."""
    return _open.get(run_id) or Journal(run_id)


def closed(run_id: str) -> None:
    _open.pop(run_id, None)


def write(run_id: str, entry: dict, files: dict[str, Path] | None = None) -> None:
    """Write ``entry`` (see ``apply``) for ``run_id``: to the store, or, when the store cannot be
    reached or records wait already, to the run's journal (``files``: local files the entry
    names, by key, copied into the journal)."""
    journal = _open.get(run_id)
    if journal is not None and journal.pending and not (journal.due() and journal.replay()):
        _keep(journal, entry, files)
        return
    try:
        with store.fail_fast():
            apply(run_id, {**entry, **{key: str(path) for key, path in (files or {}).items()}}, journal)
    except Exception as error:
        if journal is None or not is_outage(error):
            raise
        journal.tried()
        _keep(journal, entry, files)


def _named(error: OSError, folder: Path) -> OSError:
    """A write of the journal that failed, naming the journal's folder: a copy's error may name
    the file copied, which is not the one that could not be written."""
    return OSError(error.errno, error.strerror, str(folder))


def _keep(journal: Journal, entry: dict, files: dict[str, Path] | None) -> None:
    kept = {key: journal.keep_file(path) for key, path in (files or {}).items()}
    journal.append({**entry, **kept, "in_journal": sorted(kept)})


def apply(run_id: str, entry: dict, journal: Journal | None = None) -> None:
    """Carry out one record on the store: ``batch`` (metrics as [key, value, ms, step, model],
    params, tags), ``artifact`` (``file`` into ``path``), ``model`` (a saved Keras ``file``: the run's final model,
    or with ``final`` false its best checkpoint) or
    ``end`` (``status`` and the ending's ``tags``)."""
    client = MlflowClient()
    here = journal.folder if journal is not None else Path(".")
    local = {key: str(here / entry[key]) for key in entry.get("in_journal", [])}
    entry = {**entry, **local}
    kind = entry["op"]
    if kind == "batch":
        def model(ref):
            return journal.model_id if ref == JOURNAL_MODEL and journal is not None else ref

        client.log_batch(run_id, metrics=[Metric(k, v, ms, step, model_id=model(ref))
                                          for k, v, ms, step, ref in entry.get("metrics", [])],
                         params=[Param(k, v) for k, v in entry.get("params", [])],
                         tags=[RunTag(k, v) for k, v in entry.get("tags", [])])
    elif kind == "artifact":
        client.log_artifact(run_id, entry["file"], entry.get("path"))
    elif kind == "model":
        from fmtrain.tracking import logged_models

        model_id = logged_models.log_from_journal(run_id, entry)
        if journal is not None and entry.get("final", True):  # the final model, not its checkpoint
            journal.model_id = model_id
    elif kind == "end":
        tags = [RunTag(k, v) for k, v in entry.get("tags", [])]
        if entry.get("error"):  # a journal an earlier fmtrain wrote
            tags.append(RunTag(ERROR_TAG, entry["error"]))
        if tags:
            client.log_batch(run_id, tags=tags)
        client.set_terminated(run_id, entry["status"])
    else:
        raise ValueError(f"unknown journal entry {kind!r}")


def pending_runs() -> list[Journal]:
    """The journals in ``root()`` that hold records the store has not taken."""
    folder = root()
    found = [Journal(path.name, path) for path in sorted(folder.iterdir())] if folder.is_dir() else []
    return [journal for journal in found if journal.pending]


def since(journal: Journal) -> float | None:
    about = journal.folder / "about.json"
    return json.loads(about.read_text()).get("since") if about.exists() else None
