"""A sweep's comparison, read from the store alone: summary rows and figure for a parent run (or
several runs), and the same logged on the parent with its description."""

from __future__ import annotations

from fmtrain.analysis import comparison, descriptions
from fmtrain.analysis.comparison import SummaryRow


def compare(run_ids: list[str]) -> tuple[list[SummaryRow], object]:
    """Summary rows and figure for a sweep's parent run id, or for several run ids, read from
    the store alone.

    For a parent, each (configuration, seed) shows its latest child, in the sweep's order: a
    resumed sweep compares like one that was never interrupted.
    """
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import queries

    if len(run_ids) == 1 and (children := queries.child_records(run_ids[0])):
        latest = {(c.name, c.params.get("seed")): c for c in children}  # oldest first: last wins
        parent_tags = queries.run_state(run_ids[0]).tags
        rank = {name: i for i, name in enumerate(parent_tags.get(tags.SWEEP_TAG, "").split(","))}
        seed_rank = {seed: i for i, seed in enumerate(parent_tags.get(tags.SEEDS_TAG, "").split(","))}
        records = queries.with_curves(sorted(
            latest.values(), key=lambda c: (rank.get(c.name, len(rank)),
                                            seed_rank.get(c.params.get("seed"), len(seed_rank)), c.started)))
    else:
        records = queries.fetch_records(run_ids)
    return comparison.summary_rows(records), comparison.figure(records)


def log_comparison(parent_run_id: str, rows: list[SummaryRow], figure) -> None:
    """Log a comparison built by ``compare`` on the sweep's parent run, and describe the parent
    with it (what it ran, the best child, the table)."""
    from fmtrain.tracking import logged, queries
    from fmtrain.tracking import names as tags

    parent = queries.run_state(parent_run_id)
    ran = parent.tags.get(tags.SWEEP_TAG, "").split(",") if tags.SWEEP_TAG in parent.tags \
        else [row.config for row in rows]
    settings = parent.shared_settings
    seeds = [seed for seed in parent.tags.get(tags.SEEDS_TAG, "").split(",") if seed]
    markdown, best = comparison.to_markdown(rows), comparison.best_row(rows)
    logged.log_comparison(parent_run_id, figure, comparison.to_csv(rows), markdown, best,
                           descriptions.sweep_description(ran, settings, markdown, best, seeds=seeds))
