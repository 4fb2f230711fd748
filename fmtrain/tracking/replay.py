"""What a journal may still write to its run: all of it while the run is its process's, nothing
while another process holds the run, and only what the run lacks once that process has ended it.

A run belongs to the process its ``fmtrain.process`` tag names. A run whose process was cut off
(its machine lost its network) may be taken over: a sweep continues it on a live worker, from its
last state in the store, and the new process's tags name it the owner. The cut-off process's
journal then holds epochs and an end that the run went on without. Its process writes none of
them (it no longer holds the run); ``fmtrain sync`` adds, once the new process has ended the run,
only the metrics at steps the run does not hold and the files it does not have: no epoch twice,
no tag, param, model or status over the continued run's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from fmtrain.tracking.names import PROCESS_TAG

EPOCH_METRIC = "loss"  # logged at every epoch's end (Keras's training loss): its steps count the epochs


@dataclass
class Replay:
    """How a journal's records go to its run: ``owner`` the process holding the run now;
    ``taken_over`` when that is not the journal's writer; ``fenced`` while that other process
    still runs it (nothing may be written then)."""

    run_id: str
    owner: str = ""
    taken_over: bool = False
    fenced: bool = False
    skipped_steps: set[int] = field(default_factory=set)  # epochs the continued run held already
    skipped: int = 0  # records (or parts of one) left out, the continued run holding their like
    _held: dict[str, set[int]] = field(default_factory=dict)
    _files: dict[str, set[str]] = field(default_factory=dict)

    def trim(self, entry: dict) -> dict | None:
        """``entry`` as it may go to the run: whole, cut down to what the run lacks, or None."""
        if not self.taken_over:
            return entry
        kind = entry["op"]
        if kind == "batch":
            metrics = [metric for metric in entry.get("metrics", []) if not self._holds(metric)]
            self.skipped += bool(entry.get("params") or entry.get("tags"))
            if not metrics:
                return None
            return {"op": "batch", "metrics": metrics}
        if kind == "artifact" and not self._has_file(entry):
            return entry
        self.skipped += 1  # a file it has, its model, or its end
        return None

    def _holds(self, metric: list) -> bool:
        key, step = metric[0], metric[3]
        if key not in self._held:
            history = MlflowClient().get_metric_history(self.run_id, key)
            self._held[key] = {point.step for point in history}
        if step in self._held[key]:
            if key == EPOCH_METRIC:
                self.skipped_steps.add(step)
            return True
        return False

    def _has_file(self, entry: dict) -> bool:
        from pathlib import Path

        folder = entry.get("path") or ""
        if folder not in self._files:
            listed = MlflowClient().list_artifacts(self.run_id, folder or None)
            self._files[folder] = {Path(item.path).name for item in listed}
        return Path(entry["file"]).name in self._files[folder]


def plan(run_id: str, writer: str | None, here: str) -> Replay:
    """How the journal written by process ``writer`` (``host:pid``; None for a journal of an
    older fmtrain, taken as the run's own) may replay onto ``run_id`` from process ``here``: one
    read of the run. The writer itself never writes to a run taken over from it."""
    run = MlflowClient().get_run(run_id)
    owner = run.data.tags.get(PROCESS_TAG, "")
    if not writer or owner in ("", writer):
        return Replay(run_id, owner)
    return Replay(run_id, owner, taken_over=True, fenced=run.info.status == "RUNNING" or writer == here)
