"""Compare runs: the sweep's summary table, its best run and its figure, from plain records.

A record is what ``fmtrain.tracking.store.fetch_records`` returns for a run; the same code
serves a sweep as it ends and ``fmtrain compare`` on a finished one.
"""

from __future__ import annotations

import math

from fmtrain import plots

COLUMNS = ("config", "status", "optimizer", "dropout_rate", "epochs", "epochs_run", "stopped_epoch",
           "best_epoch", "best_val_loss", "final_val_loss", "final_val_accuracy",
           "reload_val_accuracy", "seconds", "run_id")


def summary_rows(records: list[dict]) -> list[dict]:
    """One row per run with the columns of COLUMNS (missing values are None)."""
    rows = []
    for record in records:
        metrics, params = record["metrics"], record["params"]
        val_losses = record.get("val_loss") or []
        rows.append({
            "config": record["name"],
            "status": record["status"] if not record.get("error") else f"{record['status']}: {record['error']}",
            "optimizer": params.get("optimizer"),
            "dropout_rate": params.get("dropout_rate"),
            "epochs": params.get("epochs"),
            "epochs_run": _int(metrics.get("epochs_run")),
            "stopped_epoch": _int(metrics.get("stopped_epoch")),
            "best_epoch": _int(metrics.get("best_epoch")),
            "best_val_loss": min(val_losses) if val_losses else None,
            "final_val_loss": metrics.get("final_val_loss"),
            "final_val_accuracy": metrics.get("final_val_accuracy"),
            "reload_val_accuracy": metrics.get("reload_whole_val_accuracy"),
            "seconds": record.get("seconds"),
            "run_id": record["run_id"],
        })
    return rows


def best_row(rows: list[dict]) -> dict | None:
    """The finished run whose kept model has the lowest validation loss (None if none)."""
    finished = [r for r in rows if r["status"] == "FINISHED" and r["final_val_loss"] is not None
                and math.isfinite(r["final_val_loss"])]  # a diverged run is never the best
    return min(finished, key=lambda r: r["final_val_loss"], default=None)


def figure(records: list[dict]):
    """Validation and train loss per epoch of every run, best and stopped epochs marked."""
    return plots.comparison_figure([
        {"name": r["name"], "loss": r.get("loss") or [], "val_loss": r.get("val_loss") or [],
         "best_epoch": _int(r["metrics"].get("best_epoch")),
         "stopped_epoch": _int(r["metrics"].get("stopped_epoch"))}
        for r in records])


def to_csv(rows: list[dict]) -> str:
    """The rows as CSV text, full precision."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table without run ids (figures rounded; the CSV keeps them whole)."""
    columns = COLUMNS[:-1]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c, row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "seconds" else f"{value:.4f}"
    return str(value)


def _int(value) -> int | None:
    return None if value is None else int(value)
