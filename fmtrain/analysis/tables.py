"""Tables and numbers as fmtrain writes them: Markdown tables, CSV text, a number's cell and a
setting's text. Every table, CSV file and rounded number fmtrain shows is made here.

Markdown tables are written without padding (``| a | b |``): the MLflow UI renders them, and a
table's rows stay greppable in a terminal and in tests.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence

from fmtrain.learning import configs

MISSING = "-"


def markdown(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: a header row, a rule, then one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text with ``\\n`` line ends; None is an empty cell, floats keep full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(value, digits: int = 4) -> str:
    """A score rounded for a table or a sentence; ``-`` when there is none (None, NaN)."""
    return f"{value:.{digits}f}" if finite(value) else MISSING


def setting(value) -> str:
    """A setting's value (or its logged text) for a table: fractions to 4 significant digits."""
    text = value if isinstance(value, str) else configs.format_value(value)
    try:
        rounded = float(text)
    except ValueError:
        return text
    return text if "." not in text and "e" not in text.lower() else f"{rounded:.4g}"


def settings_text(settings: Mapping[str, object], between: str = "=", rounded: bool = False) -> str:
    """``epochs=2, dropout_rate=0.0`` from field name -> value or its logged text; with
    ``between=" "`` and ``rounded`` (a search's trials), ``learning_rate 0.0005612, units 340``."""
    def text(value) -> str:
        if rounded:
            return setting(value)
        return value if isinstance(value, str) else configs.format_value(value)

    return ", ".join(f"{name}{between}{text(value)}" for name, value in settings.items())


def history_csv(history: Mapping[str, Sequence[float]]) -> str:
    """Per-epoch values with an ``epoch`` column first (columns of unequal length padded empty)."""
    names = list(history)
    epochs = max((len(values) for values in history.values()), default=0)
    rows = [[epoch, *(history[name][epoch] if epoch < len(history[name]) else None for name in names)]
            for epoch in range(epochs)]
    return csv_text(["epoch", *names], rows)
