"""Compare runs: the sweep's summary table, its best run and its figure, from typed records.

A record is a ``fmtrain.tracking.records.RunRecord`` (or anything with the same attributes);
the same code serves a sweep as it ends and ``fmtrain compare`` on a finished one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fmtrain.analysis import figures, tables


@dataclass
class SummaryRow:
    """One run in a sweep's summary table."""

    config: str
    seed: str | None
    status: str
    optimizer: str | None
    dropout_rate: str | None
    epochs: str | None
    epochs_run: int | None
    stopped_epoch: int | None
    best_epoch: int | None
    best_val_loss: float | None
    final_val_loss: float | None
    final_val_accuracy: float | None
    reload_val_accuracy: float | None
    seconds: float | None
    run_id: str

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"


COLUMNS = tuple(f.name for f in dataclasses.fields(SummaryRow))


def summary_rows(records) -> list[SummaryRow]:
    """One row per record, in the records' order."""
    rows = []
    for record in records:
        scores, settings = record.scores, record.settings
        val_losses = record.curves.get("val_loss") or []
        rows.append(SummaryRow(
            config=record.config,
            seed=None if record.seed is None else str(record.seed),
            status=record.status if not record.error else f"{record.status}: {record.error}",
            optimizer=settings.get("optimizer"),
            dropout_rate=settings.get("dropout_rate"),
            epochs=settings.get("epochs"),
            epochs_run=scores.epochs_run,
            stopped_epoch=scores.stopped_epoch,
            best_epoch=scores.best_epoch,
            best_val_loss=min(val_losses) if val_losses else None,
            final_val_loss=scores.final_val_loss,
            final_val_accuracy=scores.final_val_accuracy,
            reload_val_accuracy=scores.reload_whole_val_accuracy,
            seconds=record.seconds,
            run_id=record.run_id,
        ))
    return rows


def best_row(rows: list[SummaryRow]) -> SummaryRow | None:
    """The finished run whose kept model has the lowest validation loss (None if none)."""
    finished = [r for r in rows if r.finished and r.final_val_loss is not None
                and math.isfinite(r.final_val_loss)]  # a diverged run is never the best
    return min(finished, key=lambda r: r.final_val_loss, default=None)


def figure(records):
    """Validation and train loss per epoch of every run, best and stopped epochs marked."""
    return figures.comparison_figure([
        {"name": r.name, "loss": r.curves.get("loss") or [], "val_loss": r.curves.get("val_loss") or [],
         "best_epoch": r.scores.best_epoch, "stopped_epoch": r.scores.stopped_epoch}
        for r in records])


def to_csv(rows: list[SummaryRow]) -> str:
    """The rows as CSV text, full precision."""
    return tables.csv_text(COLUMNS, [dataclasses.astuple(row) for row in rows])


def to_markdown(rows: list[SummaryRow]) -> str:
    """The rows as a Markdown table without run ids (figures rounded; the CSV keeps them whole)."""
    columns = COLUMNS[:-1]
    return tables.markdown(columns, [[_cell(c, getattr(row, c)) for c in columns] for row in rows]) + "\n"


def _cell(column: str, value) -> str:
    if isinstance(value, float):
        return tables.number(value, 1 if column == "seconds" else 4)
    return tables.MISSING if value is None else str(value)
