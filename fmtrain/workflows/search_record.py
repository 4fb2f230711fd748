"""A search's record on its parent run, and what a search left that a later command settles: the
trials a signal stopped, and those a killed driver left to ``fmtrain tune --resume``."""

from __future__ import annotations

import json

from fmtrain.analysis import tables
from fmtrain.learning import configs
from fmtrain.tuning import space, trials
from fmtrain.tuning import study as studies
from fmtrain.tuning.trials import TrialRow

SPACE_FILE = "space.json"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
HISTORY_FIGURE = "optimisation-history.png"
IMPORTANCE_FIGURE = "param-importance.png"
# The options `fmtrain tune --resume` takes: the rest come from the search's parent run.
RESUME_OPTIONS = ("--trials", "--data_dir", "--quiet", "--register_best", "--alias", "--max_retries")


def resumable(parent_id: str, trials_wanted: int, given: tuple[str, ...]):
    """Check that the search ``parent_id`` may continue; returns what it was asked for (its
    SearchPlan), its study's name, its experiment and how many trials ended by themselves.

    Refused, in one line and with nothing changed: a run that is not a search's parent, a search
    that finished, options other than ``--trials`` (and those that change nothing of the search),
    fewer trials than it was asked for, and a search whose driver or a trial's worker still runs.
    """
    from fmtrain.tracking import lost_runs, queries
    from fmtrain.tracking.records import SearchPlan

    parent = queries.run_record(parent_id)
    if not parent.labels.is_search:
        raise ValueError(f"run {parent_id} ({parent.name}) is not a search's parent run")
    others = [option for option in given if option not in RESUME_OPTIONS]
    if others:
        raise ValueError(f"--resume continues the search with its own settings and space; give no "
                         f"{', '.join(others)} with it (only --trials, to raise how many)")
    plan = SearchPlan.from_params(parent.params)
    if "--trials" in given and trials_wanted < plan.trials:
        raise ValueError(f"search {parent_id} was asked for {plan.trials} trials; --trials may raise "
                         f"that, not lower it to {trials_wanted}")
    if parent.status == "FINISHED":
        raise ValueError(f"search {parent_id} is complete (FINISHED): there is nothing to resume")
    for record in [parent, *queries.children(parent_id)]:
        if record.status == "RUNNING" and not _gone(record, lost_runs):
            what = "its driver" if record is parent else f"{record.name}'s worker"
            raise ValueError(f"search {parent_id} is still running: {what} ({lost_runs.process_label(record)}) "
                             "shows life; stop it before resuming, or wait until its heartbeat is stale")
    ended = sum(row.counts for row in _rows(parent_id, plan))
    return plan, parent.labels.study, parent.experiment_id, ended


def _gone(record, lost_runs) -> bool:
    """Whether the process of a RUNNING run is gone: proven here (psutil), or its heartbeat stale."""
    alive = lost_runs.process_alive(record)
    return alive is False or (alive is None and bool(lost_runs.stale([record])))


def _rows(parent_id: str, plan) -> list[TrialRow]:
    from fmtrain.workflows.search_trials import trial_rows

    return trial_rows(parent_id, list(plan.space))


def settle_leftovers(parent_id: str, study, echo) -> None:
    """What a killed driver left: trials its study still holds as running are told they failed
    (so the sampler leaves them aside), and their runs still RUNNING end KILLED, their process
    gone; each is replaced by a new trial."""
    from fmtrain.tracking import lost_runs, queries

    for trial in studies.unfinished_trials(study):
        studies.abandon(study, trial)
    for stale in lost_runs.stale(queries.children(parent_id), 0):
        lost_runs.settle([stale.record], "KILLED", lost_runs.process_lost(stale.age))
        echo(f"ended run {stale.run_id} ({stale.name}) KILLED: its process is gone; a new trial replaces it")


def end_stopped_trials(parent_id: str, attempt: str, signum: int) -> list[str]:
    """After ``signum`` stopped the search, end as that signal says this attempt's trials still
    RUNNING (their workers were killed) or that the cancel ended (a Ctrl-C to a worker); returns
    ``run ID (name)`` for each."""
    import contextlib
    import signal

    from fmtrain.errors import signal_description
    from fmtrain.tracking import lost_runs, queries
    from fmtrain.tracking.records import Cause, Ending, status_for

    ended: list[str] = []
    with contextlib.suppress(Exception):  # a store that cannot be reached ends the list early
        mine = [run for run in queries.children(parent_id) if (run.labels.job or "").startswith(attempt)]
        for run in lost_runs.settle(mine, status_for(signum), Ending(Cause.SIGNAL, signal_description(signum)),
                                    replacing=signal_description(signal.SIGINT)):
            ended.append(f"run {run.run_id} ({run.name})")
    return ended


def log_search(parent_id: str, rows: list[TrialRow], best: TrialRow | None, searched: space.Space,
               seed: int = 0) -> None:
    """The search's record on its parent: tables, space, figures, the best trial's settings and
    scores, and a description."""
    from fmtrain.analysis import figures
    from fmtrain.tracking import logged

    names = list(searched)
    finished = [row for row in rows if row.status == "FINISHED" and row.final_val_loss is not None]
    history = figures.history_figure([(row.number, row.final_val_loss,
                                     "complete" if row.complete else row.stopped_by) for row in finished])
    # Importance over the complete trials only: a pruned trial's loss is an early epoch's.
    scored = [({name: configs.parse_value(name, row.settings[name]) for name in names}, row.final_val_loss)
              for row in finished if row.complete]
    importance = space.importances(searched, scored, seed=seed)
    markdown = trials.to_markdown(rows, names, best)
    counts = {"trials_complete": sum(row.complete for row in rows),
              "trials_pruned": sum(row.stopped_by == studies.PRUNED for row in rows),
              "trials_failed": sum(row.status != "FINISHED" for row in rows)}
    metrics, params = dict(counts), {}
    if best is not None:
        metrics.update(best_final_val_loss=best.final_val_loss,
                       best_final_val_accuracy=best.final_val_accuracy, best_trial=best.number)
        params = {f"best_{name}": value for name, value in best.settings.items()}
    lines = []
    if best is not None:
        lines += [f"Best: trial {best.number} ({tables.settings_text(best.settings, between=' ', rounded=True)}), "
                  f"final val_loss {best.final_val_loss:.4f}, val_accuracy {best.final_val_accuracy:.4f} "
                  f"(run `{best.run_id}`).", ""]
    lines += [f"{len(rows)} trials: {counts['trials_complete']} complete, {counts['trials_pruned']} "
              f"pruned by successive halving, {counts['trials_failed']} failed or killed. Figures: "
              f"`{HISTORY_FIGURE}`, `{IMPORTANCE_FIGURE}` (Artifacts); the space: `{SPACE_FILE}`.", ""]
    if importance:
        lines += ["Importance for the complete trials' val_loss (fANOVA): "
                  + ", ".join(f"{name} {value:.2f}" for name, value in importance.items()) + ".", ""]
    lines.append(markdown)
    logged.log_search(parent_id, texts={TRIALS_CSV: trials.to_csv(rows, names), TRIALS_MD: markdown,
                                         SPACE_FILE: json.dumps(space.to_data(searched), indent=2)},
                      figures={HISTORY_FIGURE: history, IMPORTANCE_FIGURE: figures.importance_figure(importance)},
                      metrics=metrics, params=params, best_run_id=best.run_id if best else None,
                      description="\n".join(lines))
