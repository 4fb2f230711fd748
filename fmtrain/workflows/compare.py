"""A sweep's comparison, read from the store alone: summary rows and figure for a parent run (or
several runs), and the same logged on the parent with its description."""

from __future__ import annotations

from pathlib import Path

from fmtrain.analysis import comparison, descriptions
from fmtrain.analysis.comparison import SummaryRow


def compare(run_ids: list[str]) -> tuple[list[SummaryRow], object]:
    """Summary rows and figure for a sweep's parent run id, or for several run ids, read from
    the store alone.

    For a parent, each (configuration, seed) shows its latest child, in the sweep's order: a
    resumed sweep compares like one that was never interrupted.
    """
    from fmtrain.tracking import queries

    if len(run_ids) == 1 and (children := queries.children(run_ids[0])):
        latest = {(c.config, c.seed): c for c in children}  # oldest first: last wins
        parent = queries.run_record(run_ids[0]).labels
        rank = {name: i for i, name in enumerate(parent.sweep_configs)}
        seed_rank = {seed: i for i, seed in enumerate(parent.sweep_seeds)}
        records = queries.with_curves(sorted(
            latest.values(), key=lambda c: (rank.get(c.config, len(rank)),
                                            seed_rank.get(c.seed, len(seed_rank)), c.started)))
    else:
        records = queries.fetch_records(run_ids)
    return comparison.summary_rows(records), comparison.figure(records)


def compare_into(run_ids: list[str], output: str) -> tuple[str, Path]:
    """``fmtrain compare``: the comparison of ``run_ids`` written into the folder ``output`` under
    the names a sweep's parent logs them as; returns its Markdown table and the folder."""
    from fmtrain.tracking import logged, store

    store.open_store()
    rows, figure = compare(run_ids)
    markdown = comparison.to_markdown(rows)
    folder = Path(output)
    logged.save_comparison(folder, figure, comparison.to_csv(rows), markdown)
    return markdown, folder


def log_comparison(parent_run_id: str, rows: list[SummaryRow], figure) -> None:
    """Log a comparison built by ``compare`` on the sweep's parent run, and describe the parent
    with it (what it ran, the best child, the table)."""
    from fmtrain.tracking import logged, queries

    parent = queries.run_record(parent_run_id)
    ran = list(parent.labels.sweep_configs) or [row.config for row in rows]
    seeds = [str(seed) for seed in parent.labels.sweep_seeds]
    markdown, best = comparison.to_markdown(rows), comparison.best_row(rows)
    logged.log_comparison(parent_run_id, figure, comparison.to_csv(rows), markdown, best,
                          descriptions.sweep_description(ran, parent.shared_settings, markdown, best, seeds=seeds))
