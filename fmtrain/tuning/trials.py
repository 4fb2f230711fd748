"""A search's trials as rows: how each ended, its settings and scores, and the best one.

Built from plain values (the workflow reads them from the store); no MLflow here.
"""

from __future__ import annotations

from dataclasses import dataclass

from fmtrain.analysis import tables


@dataclass
class TrialRow:
    """One trial of a search, as its run holds it."""

    number: int
    run_id: str
    status: str  # the run's: FINISHED, FAILED, KILLED
    settings: dict[str, str]  # the searched settings, as logged
    final_val_loss: float | None = None
    final_val_accuracy: float | None = None
    epochs_run: int | None = None
    pruned_epoch: int | None = None  # stopped by the search after this epoch (0-based)
    stopped_by: str = ""  # "pruned", "time budget", or "" when it ran to its end
    error: str = ""
    counts: bool = True  # it ended by itself (not killed with its process): one of the --trials


    @property
    def complete(self) -> bool:
        """Finished by itself: its model is trained as its settings say (not pruned)."""
        return self.status == "FINISHED" and not self.stopped_by

    @property
    def outcome(self) -> str:
        if self.status != "FINISHED":
            return self.status.lower()
        if self.stopped_by == "pruned":
            return f"pruned after epoch {self.pruned_epoch}"
        if self.stopped_by:
            return f"stopped by the {self.stopped_by}"
        return "complete"


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    """The complete trial with the lowest final val_loss (ties: the earlier trial)."""
    scored = [row for row in rows if row.complete and tables.finite(row.final_val_loss)]
    return min(scored, key=lambda row: (row.final_val_loss, row.number), default=None)


def to_markdown(rows: list[TrialRow], names: list[str], best: TrialRow | None = None) -> str:
    """The trials in order, one row each, the best marked."""
    head = ["trial", *names, "val_loss", "val_accuracy", "epochs", "ended"]
    cells = []
    for row in sorted(rows, key=lambda r: r.number):
        mark = " (best)" if best is not None and row.run_id == best.run_id else ""
        cells.append([f"{row.number}{mark}", *(tables.setting(row.settings.get(name, "-")) for name in names),
                      tables.number(row.final_val_loss), tables.number(row.final_val_accuracy),
                      "-" if row.epochs_run is None else str(row.epochs_run), row.outcome])
    return tables.markdown(head, cells)


def to_csv(rows: list[TrialRow], names: list[str]) -> str:
    head = ["trial", "run_id", *names, "final_val_loss", "final_val_accuracy", "epochs_run",
            "status", "ended", "error"]
    return tables.csv_text(head, [
        [row.number, row.run_id, *(row.settings.get(name, "") for name in names), row.final_val_loss,
         row.final_val_accuracy, row.epochs_run, row.status, row.outcome, row.error]
        for row in sorted(rows, key=lambda r: r.number)])


def trial_name(number: int) -> str:
    """Trial ``number``'s run name, as every line names it: ``trial-02``."""
    return f"trial-{number:02d}"


def trial_line(count: int, total: int, number: int, settings: dict[str, str], ended: str) -> str:
    """``[3/30] trial-02 (learning_rate 0.0007, ...) ... pruned after epoch 1 (val_loss 0.439)``"""
    return (f"[{count}/{total}] {trial_name(number)} "
            f"({tables.settings_text(settings, between=' ', rounded=True)}) ... {ended}")


def trial_end_text(result) -> str:
    """How a trial ended (a workflows.search_trials.TrialResult), as its line says it."""
    if result.error:
        return f"FAILED: {result.error}"
    if result.stopped_by == "pruned":
        return f"pruned after epoch {result.stopped_epoch} (val_loss {result.val_loss:.3f})"
    if result.stopped_by:
        return f"stopped by the {result.stopped_by}"
    return f"val_loss {result.val_loss:.4f}, val_accuracy {result.val_accuracy:.4f}"
