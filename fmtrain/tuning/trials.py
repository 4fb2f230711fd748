"""A search's trials as rows: how each ended, its settings and scores, and the best one.

Built from plain values (the workflow reads them from the store); no MLflow here.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from fmtrain.errors import signal_description


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
    scored = [row for row in rows if row.complete and _finite(row.final_val_loss)]
    return min(scored, key=lambda row: (row.final_val_loss, row.number), default=None)


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def to_markdown(rows: list[TrialRow], names: list[str], best: TrialRow | None = None) -> str:
    """The trials in order, one row each, the best marked."""
    head = ["trial", *names, "val_loss", "val_accuracy", "epochs", "ended"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(rows, key=lambda r: r.number):
        mark = " (best)" if best is not None and row.run_id == best.run_id else ""
        cells = [f"{row.number}{mark}", *(short(row.settings.get(name, "-")) for name in names),
                 _number(row.final_val_loss), _number(row.final_val_accuracy),
                 "-" if row.epochs_run is None else str(row.epochs_run), row.outcome]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_csv(rows: list[TrialRow], names: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "run_id", *names, "final_val_loss", "final_val_accuracy", "epochs_run",
                     "status", "ended", "error"])
    for row in sorted(rows, key=lambda r: r.number):
        writer.writerow([row.number, row.run_id, *(row.settings.get(name, "") for name in names),
                         "" if row.final_val_loss is None else row.final_val_loss,
                         "" if row.final_val_accuracy is None else row.final_val_accuracy,
                         "" if row.epochs_run is None else row.epochs_run, row.status, row.outcome,
                         row.error])
    return out.getvalue()


def short(text: str) -> str:
    """A setting's logged value for a table: fractions to 4 significant digits (0.0005612)."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return text
    return text if "." not in text and "e" not in text.lower() else f"{number:.4g}"


def settings_text(settings: dict[str, str]) -> str:
    return ", ".join(f"{name} {short(value)}" for name, value in settings.items())


def _number(value) -> str:
    return "-" if not _finite(value) else f"{value:.4f}"


def trial_line(count: int, total: int, number: int, settings: dict[str, str], ended: str) -> str:
    """``[3/30] trial-02 (learning_rate 0.0007, ...) ... pruned after epoch 1 (val_loss 0.439)``"""
    return f"[{count}/{total}] trial-{number:02d} ({settings_text(settings)}) ... {ended}"


def trial_end_text(end) -> str:
    """How a trial ended (a tuning.engine.TrialEnd), as its line says it."""
    loss, verdict = end.result.get("val_loss"), end.verdict
    if end.error:
        return f"FAILED: {end.error}"
    if verdict is None:
        return f"val_loss {loss:.4f}, val_accuracy {end.result.get('val_accuracy', float('nan')):.4f}"
    if verdict.kind == "pruned":
        return f"pruned after epoch {verdict.epoch} (val_loss {loss:.3f})"
    if verdict.kind == "budget":
        return "stopped by the time budget"
    if verdict.kind == "signal":
        return signal_description(verdict.signum or 15)
    return "stopped after an error of the search"
